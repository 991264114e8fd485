"""Scoring a decoder LM's candidate answers: the log-likelihood of each answer's tokens given the prompt.

The predicted label is the candidate with the higher total log-likelihood (summed over its tokens, so with
answers of unequal length the longer one pays for its extra tokens; the default "yes"/"no" answers are one
token each in common tokenizers). The gold answer's negative log-likelihood per token gives the loss and the
perplexity that evaluation reports: perplexity of the gold *answer* given the prompt, not of prompt + answer.

Two exact routes:
- every answer a single token: one forward pass of prompt + gold answer; the logits at the last prompt
  position score every candidate at once.
- otherwise: one forward pass per candidate (prompt + that candidate for every row).

Where the model accepts `logits_to_keep` (most HF decoders), only the last positions of the batch get
vocabulary logits: with right padding and rows of similar length (evaluation sorts by length) that is a few
positions instead of all, which matters for a 49k-token vocabulary on a CPU.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch

from fedlora.data.prompts import TokenizedPrompts


@dataclass(frozen=True)
class AnswerScores:
    """Per example: each candidate's log-likelihood [n, k], and the gold answer's NLL sum and token count."""

    loglik: np.ndarray
    gold_nll: np.ndarray
    gold_tokens: np.ndarray

    def predictions(self) -> np.ndarray:
        return self.loglik.argmax(axis=1)  # ties: the lower label, deterministically


def accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _forward_tail(model, batch: dict[str, torch.Tensor], first: int, keep_ok: bool) -> tuple[torch.Tensor, int]:
    """(logits of positions first-1 .. T-1, offset first-1): the positions that predict tokens from `first` on."""
    width = batch["input_ids"].shape[1]
    start = max(first - 1, 0)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if keep_ok:  # the model computes vocabulary logits for the tail only
        return model(**inputs, logits_to_keep=width - start).logits, start
    return model(**inputs).logits[:, start:], start


def _answer_loglik(model, batch: dict[str, torch.Tensor], first: int, keep_ok: bool) -> torch.Tensor:
    """Sum over each row's labelled (answer) tokens of log p(token | everything before it)."""
    logits, start = _forward_tail(model, batch, first, keep_ok)
    targets = batch["labels"][:, start + 1 :]
    rows, cols = torch.nonzero(targets != -100, as_tuple=True)
    logp = torch.log_softmax(logits[rows, cols].float(), dim=-1)
    picked = logp.gather(1, targets[rows, cols].unsqueeze(1)).squeeze(1)
    out = torch.zeros(batch["input_ids"].shape[0], dtype=torch.float64)
    return out.index_add_(0, rows, picked.double())


@torch.no_grad()
def score_answers(
    model,
    data: TokenizedPrompts,
    indices: np.ndarray,
    batch_size: int,
    single_token_route: bool | None = None,
    use_logits_to_keep: bool | None = None,
) -> AnswerScores:
    """Score every candidate answer of the examples `indices` (in that order); the model must be in eval mode.

    `single_token_route` / `use_logits_to_keep`: None picks automatically; tests force each route to check
    that they agree.
    """
    idx = np.asarray(indices, dtype=np.int64)
    k = len(data.answer_ids)
    single = data.single_token_answers if single_token_route is None else single_token_route
    if single and not data.single_token_answers:
        raise ValueError("the single-token route needs every answer to be one token")
    keep_ok = accepts_logits_to_keep(model) if use_logits_to_keep is None else use_logits_to_keep
    answer_len = np.array([len(a) for a in data.answer_ids], dtype=np.int64)
    prompt_len = data.prompt_lengths
    loglik = np.empty((len(idx), k), dtype=np.float64)
    for s in range(0, len(idx), batch_size):
        chunk = idx[s : s + batch_size]
        first = int(prompt_len[chunk].min())  # the earliest answer token in the chunk
        if single:
            batch = data.encode(chunk)
            logits, start = _forward_tail(model, batch, first, keep_ok)
            last = torch.as_tensor(prompt_len[chunk] - 1 - start)
            logp = torch.log_softmax(logits[torch.arange(len(chunk)), last].float(), dim=-1)
            cand = torch.tensor([a[0] for a in data.answer_ids])
            loglik[s : s + len(chunk)] = logp[:, cand].double().numpy()
        else:
            for c in range(k):
                batch = data.encode(chunk, answer=c)
                loglik[s : s + len(chunk), c] = _answer_loglik(model, batch, first, keep_ok).numpy()
    gold = data.labels[idx]
    return AnswerScores(loglik=loglik, gold_nll=-loglik[np.arange(len(idx)), gold], gold_tokens=answer_len[gold])
