"""Scoring a decoder LM's responses to instructions: loss, perplexity, exact match, choice accuracy.

- Loss and perplexity: the gold response's negative log-likelihood per token given the prompt (the
  quantity training minimises), over every validation example.
- Exact match, for references of at most `exact_match_tokens` tokens that kept all their tokens: the
  model's argmax equals the reference at every response position, given the reference so far. That is
  exactly "greedy decoding from the prompt reproduces the reference, end-of-turn included": while the
  greedy output equals the reference, its context is the teacher-forced one. So it costs one forward
  pass instead of a generation loop, and is deterministic.
- Choice accuracy, where rows list choices: the choice with the highest total log-likelihood, as
  training/causal.py scores GLUE answers (ties go to the lower index).

Logits are computed from the earliest response position of a batch on (`logits_to_keep` where the model
takes it) and the log-softmax only at the response positions: a 49k-token vocabulary stays affordable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedlora.data.instruction_tokens import TokenizedInstructions
from fedlora.training.causal import accepts_logits_to_keep


@dataclass(frozen=True)
class ResponseScores:
    """Per example, in the order scored: prediction (best choice, else 0), gold NLL sum and token count, and
    exact match as 1/0 (NaN where the reference is too long to count)."""

    predictions: np.ndarray
    gold_nll: np.ndarray
    gold_tokens: np.ndarray
    exact_match: np.ndarray


def _response_positions(
    model, batch: dict[str, torch.Tensor], first: int, keep_ok: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, log p(target), argmax == target) at every labelled position of `batch`."""
    width = batch["input_ids"].shape[1]
    start = max(first - 1, 0)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    logits = model(**inputs, logits_to_keep=width - start).logits if keep_ok else model(**inputs).logits[:, start:]
    targets = batch["labels"][:, start + 1 :]
    rows, cols = torch.nonzero(targets != -100, as_tuple=True)
    picked = logits[rows, cols].float()
    gold = targets[rows, cols]
    logp = torch.log_softmax(picked, dim=-1).gather(1, gold.unsqueeze(1)).squeeze(1)
    return rows, logp.double(), picked.argmax(-1) == gold


@torch.no_grad()
def score_responses(model, data: TokenizedInstructions, indices: np.ndarray, batch_size: int) -> ResponseScores:
    """Score the examples `indices` (in that order); the model must be in eval mode."""
    idx = np.asarray(indices, dtype=np.int64)
    keep_ok = accepts_logits_to_keep(model)
    prompt_len = data.prompt_lengths
    gold_len = data.gold_lengths
    nll = np.zeros(len(idx), dtype=np.float64)
    match = np.zeros(len(idx), dtype=bool)
    most = max((len(data.candidates[i]) for i in idx), default=1)
    loglik = np.full((len(idx), most), -np.inf)
    for s in range(0, len(idx), batch_size):
        chunk = idx[s : s + batch_size]
        first = int(prompt_len[chunk].min())
        rows, logp, hit = _response_positions(model, data.encode(chunk), first, keep_ok)
        n = len(chunk)
        nll[s : s + n] = -torch.zeros(n, dtype=torch.float64).index_add_(0, rows, logp).numpy()
        misses = torch.zeros(n, dtype=torch.long).index_add_(0, rows, (~hit).long())
        match[s : s + n] = (misses == 0).numpy()
        if not data.has_choices:
            continue
        for c in range(most):
            have = np.array([c < len(data.candidates[i]) for i in chunk])
            if not have.any():
                continue
            sub = chunk[have]
            batch = data.encode(sub, candidate=c)
            rows, logp, _ = _response_positions(model, batch, int(prompt_len[sub].min()), keep_ok)
            total = torch.zeros(len(sub), dtype=torch.float64).index_add_(0, rows, logp).numpy()
            loglik[s + np.flatnonzero(have), c] = total
    predictions = loglik.argmax(axis=1) if data.has_choices else np.zeros(len(idx), dtype=np.int64)
    complete = np.asarray(data.complete, dtype=bool)[idx]
    short = complete & (gold_len[idx] <= data.exact_match_tokens)
    exact = np.where(short, match.astype(np.float64), np.nan)
    return ResponseScores(predictions, nll, gold_len[idx], exact)
