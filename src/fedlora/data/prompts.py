"""GLUE pairs written as prompts for decoder LMs (`task.kind: causal_lm`), tokenised once, batched on demand.

An example is `prompt + answer`, where the answer is the text of its label ("yes"/"no"). The batch's `labels`
are -100 everywhere except on the answer tokens, so `model(**batch).loss` is already the causal LM loss on
the answer tokens only, and the training loop is shared with classification.

Choices, and why:
- The prompt ids and the candidate answers are stored separately and joined when a batch is built. A label
  change (the noise partitioner's flips, applied with `dataclasses.replace(labels=...)`) then changes the
  answer the model is trained on, with no re-tokenisation; scoring builds the same prompt with each candidate.
- The template is tokenised piece by piece (literal text, sentence 1, sentence 2) so truncation can cut the
  sentences only, longest first, and keep the question and the answer: every sequence fits task.max_length
  exactly. A literal's trailing space moves onto the sentence after it, so BPE tokenizers see " word" as in
  running text.
- Right padding: a causal model's outputs at the real tokens do not depend on the pads after them, and the
  positions are 0..n-1 as without padding, so no position ids are needed for any architecture.
- The leading special tokens that the tokenizer adds by itself (BOS for Llama, none for GPT-2 style BPE,
  [CLS] for a BERT wordpiece) start every prompt; trailing ones ([SEP], EOS) are not appended: the loss and
  the score cover the answer tokens only.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedlora.data.glue import TextPairs
from fedlora.errors import ConfigError

FIELDS = ("text_a", "text_b")


@dataclass(frozen=True)
class PromptSpec:
    """A template with `{text_a}` and `{text_b}`, and `answers[k]`: the text appended for label k."""

    template: str
    answers: tuple[str, ...]


# Label ids follow data/glue.py: mrpc/qqp 1 = paraphrase/duplicate; rte 0 = entailment.
DEFAULT_PROMPTS: dict[str, PromptSpec] = {
    "mrpc": PromptSpec("Sentence 1: {text_a}\nSentence 2: {text_b}\nParaphrase (yes or no)?", (" no", " yes")),
    "rte": PromptSpec(
        "Premise: {text_a}\nHypothesis: {text_b}\nDoes the premise entail the hypothesis (yes or no)?",
        (" yes", " no"),
    ),
    "qqp": PromptSpec(
        "Question 1: {text_a}\nQuestion 2: {text_b}\nDo both questions ask the same thing (yes or no)?",
        (" no", " yes"),
    ),
}


def prompt_spec(task: str, template: str | None = None, answers: Sequence[str] | None = None) -> PromptSpec:
    """The task's default prompt with the config's overrides (`task.prompt.template`, `task.prompt.answers`)."""
    if task not in DEFAULT_PROMPTS:
        raise ConfigError(f"task.name={task!r} has no prompt; choose one of: {', '.join(sorted(DEFAULT_PROMPTS))}")
    base = DEFAULT_PROMPTS[task]
    spec = PromptSpec(template or base.template, tuple(answers) if answers else base.answers)
    try:
        parse_template(spec.template)
        check_answers(spec.answers)
    except ValueError as exc:
        raise ConfigError(f"task.prompt.{exc}") from None
    return spec


def parse_template(template: str) -> list[tuple[str, str]]:
    """[("text", literal) | ("field", "text_a"/"text_b")]; ValueError unless each field occurs exactly once.

    Messages start with the field name relative to `task.prompt` ("template: ..."), as the config expects.
    """
    parts: list[tuple[str, str]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"template: {exc} (write a literal brace as {{{{ or }}}})") from None
    for literal, field, spec, conv in parsed:
        if literal:
            parts.append(("text", literal))
        if field is None:
            continue
        if field not in FIELDS or spec or conv:
            raise ValueError(
                f"template: unknown placeholder {{{field}}}; use {{text_a}} and {{text_b}} only "
                "(write a literal brace as {{ or }})"
            )
        parts.append(("field", field))
    fields = [v for k, v in parts if k == "field"]
    if sorted(fields) != sorted(FIELDS):
        raise ValueError(f"template: must contain {{text_a}} and {{text_b}} exactly once each (found {fields})")
    return parts


def check_answers(answers: Sequence[str]) -> None:
    if len(answers) != 2 or any(not a.strip() for a in answers) or answers[0] == answers[1]:
        raise ValueError(
            f"answers: must be two different non-empty texts, answers[k] for label k (got {list(answers)})"
        )


@dataclass(frozen=True)
class TokenizedPrompts:
    """Prompt ids per example plus the candidate answers' ids; the same interface as `TokenizedPairs`.

    `input_ids` are the prompts (without answer). `token_type_ids` is always None (decoders take none); the
    field exists so code that edits `TokenizedPairs` fields by name (Corruption.apply_tokenized) works here.
    """

    input_ids: list[list[int]]
    token_type_ids: None
    labels: np.ndarray
    pad_id: int
    answer_ids: tuple[tuple[int, ...], ...]  # answer_ids[k]: the tokens of the answer for label k
    vocab_size: int  # the tokenizer's; every id is below it
    tail_logits: bool = False  # batch() asks for logits from the earliest answer token on (model must accept it)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def prompt_lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids], dtype=np.int64)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens of prompt + gold answer: what a training step processes."""
        answer_len = np.array([len(a) for a in self.answer_ids], dtype=np.int64)
        return self.prompt_lengths + answer_len[self.labels]

    @property
    def max_token_id(self) -> int:
        """The largest id in the prompts and answers (it must fit the model's embedding table)."""
        top = max((max(p, default=0) for p in self.input_ids), default=0)
        return max(top, *(max(a) for a in self.answer_ids))

    @property
    def single_token_answers(self) -> bool:
        return all(len(a) == 1 for a in self.answer_ids)

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """The training batch: `model(**batch).loss` is the causal LM loss on the gold answer tokens.

        With `tail_logits`, the model computes vocabulary logits only for the positions from the one before the
        batch's earliest answer token on (`logits_to_keep`), and `labels` are cut to the same window. HF's causal
        LM loss shifts labels by one inside that window, so the loss is the same number as with all positions,
        but the vocabulary projection and its backward pass, most of a small model's cost, shrink to a few
        positions.
        """
        out = self.encode(indices)
        if not self.tail_logits:
            return out
        start = int(self.prompt_lengths[[int(i) for i in indices]].min()) - 1
        keep = out["input_ids"].shape[1] - start
        return {**out, "labels": out["labels"][:, start:], "logits_to_keep": keep}

    def encode(self, indices: Sequence[int], answer: int | None = None) -> dict[str, torch.Tensor]:
        """Right-padded prompt + answer (the gold one, or candidate `answer` for every row), all positions.

        `labels` are the input ids on the answer tokens and -100 elsewhere (prompt and padding).
        """
        idx = [int(i) for i in indices]
        seqs = []
        for i in idx:
            a = self.answer_ids[int(self.labels[i]) if answer is None else answer]
            seqs.append((self.input_ids[i], a))
        return pad_prompt_answer(seqs, self.pad_id)


def pad_prompt_answer(seqs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded (prompt + answer) rows whose `labels` are the answer ids and -100 elsewhere: the loss of
    a causal LM on the answer tokens only, shared by GLUE prompts and instruction data."""
    width = max(len(p) + len(a) for p, a in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for row, (p, a) in enumerate(seqs):
        n = len(p) + len(a)
        ids[row, :n] = torch.tensor(list(p) + list(a))
        mask[row, :n] = 1
        labels[row, len(p) : n] = torch.tensor(list(a))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _leading_specials(tokenizer) -> list[int]:
    """The special ids the tokenizer itself puts before a text (BOS, [CLS]), found by encoding a probe."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a")["input_ids"])
    for k in range(len(full) - len(plain) + 1):
        if full[k : k + len(plain)] == plain:
            return full[:k]
    return []


def _longest_first(la: int, lb: int, budget: int) -> tuple[int, int]:
    """Kept lengths of two texts cut to `budget` tokens by trimming the longer one first (as HF longest_first)."""
    if la + lb <= budget:
        return la, lb
    half = budget // 2
    if la <= half:
        return la, budget - la
    if lb <= half:
        return budget - lb, lb
    return budget - half, half


def tokenize_prompts(tokenizer, pairs: TextPairs, max_length: int, spec: PromptSpec) -> TokenizedPrompts:
    """Every pair as `spec.template` filled in, cut (sentences only) so prompt + longest answer <= max_length."""
    parts = parse_template(spec.template)
    # move a literal's trailing space onto the sentence that follows it (BPE: " word" as in running text)
    pieces: list[tuple[str, str]] = []
    lead_space = {f: "" for f in FIELDS}
    for k, (kind, value) in enumerate(parts):
        nxt = parts[k + 1] if k + 1 < len(parts) else None
        if kind == "text" and nxt is not None and nxt[0] == "field" and value.endswith(" "):
            value = value[:-1]
            lead_space[nxt[1]] = " "
        if kind == "field" or value:
            pieces.append((kind, value))

    def encode(texts: list[str]) -> list[list[int]]:
        return [list(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []

    literals = {v: encode([v])[0] for k, v in pieces if k == "text"}
    answers = tuple(tuple(ids) for ids in encode(list(spec.answers)))
    if any(not a for a in answers) or len(set(answers)) != len(answers):
        raise ConfigError(
            f"task.prompt.answers {list(spec.answers)} tokenise to {[list(a) for a in answers]}; "
            "each answer needs its own non-empty token sequence"
        )
    texts = {
        "text_a": encode([lead_space["text_a"] + t for t in pairs.text_a]),
        "text_b": encode([lead_space["text_b"] + t for t in pairs.text_b]),
    }
    lead = _leading_specials(tokenizer)
    fixed = len(lead) + sum(len(literals[v]) for k, v in pieces if k == "text")
    budget = max_length - fixed - max(len(a) for a in answers)
    if budget < 2:
        raise ConfigError(
            f"task.max_length={max_length} leaves no room for the sentences: the prompt template and the longest "
            f"answer take {fixed + max(len(a) for a in answers)} tokens; raise task.max_length or shorten "
            "task.prompt.template"
        )
    prompts = []
    for i in range(len(pairs)):
        a, b = texts["text_a"][i], texts["text_b"][i]
        ka, kb = _longest_first(len(a), len(b), budget)
        kept = {"text_a": a[:ka], "text_b": b[:kb]}
        ids = list(lead)
        for kind, value in pieces:
            ids += literals[value] if kind == "text" else kept[value]
        prompts.append(ids)
    return TokenizedPrompts(
        input_ids=prompts,
        token_type_ids=None,
        labels=np.asarray(pairs.labels, dtype=np.int64),
        pad_id=int(tokenizer.pad_token_id),
        answer_ids=answers,
        vocab_size=len(tokenizer),
    )
