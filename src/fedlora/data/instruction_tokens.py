"""Instruction examples as prompt + response token ids, with the loss on the response tokens only.

The prompt is the Alpaca template (Taori et al., 2023; its "with input" and "no input" forms), a format
string of the user's with {instruction} and optionally {input}, or the tokenizer's chat template (or
`task.chat_template`) applied to the conversation. The response is the reference reply followed by what
ends it: the tokenizer's EOS for templates, the chat template's own end-of-turn text for conversations, so
the model learns where to stop.

Choices, and why:
- As data/prompts.py: prompt ids and candidate responses are stored apart and joined per batch. A label
  flip (noise partitioner) then switches the reply to another choice without re-tokenising, and scoring
  builds prompt + each candidate. Without choices the reference is the one candidate.
- The template is rendered once per shape with every content replaced by a marker, then split into literal
  pieces and contents, so truncation cuts contents only (longest first), never the template, the role
  headers or the generation prompt; a literal's trailing space moves onto the content after it (BPE: " word"
  as in running text). A template that renders a content twice or drops it is refused.
- Truncation to task.max_length: the response keeps all its tokens when they fit beside the prompt, and
  at least half of the room otherwise (its tail is cut); the prompt's contents fill the rest.
- Right padding and the leading special tokens as in data/prompts.py (chat templates carry their own).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from fedlora.data.instruction import InstructionExamples
from fedlora.data.prompts import _leading_specials, pad_prompt_answer
from fedlora.errors import ConfigError, DataError

# Stanford Alpaca's two prompts (github.com/tatsu-lab/stanford_alpaca, train.py PROMPT_DICT)
ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
PRESETS = ("alpaca", "chat")
PLACEHOLDERS = ("instruction", "input")

_MARK = "\ue000{}\ue001"  # private-use code points: no tokenizer vocabulary or user text holds them
_MARK_RE = re.compile("\ue000(\\d+)\ue001")
_REPLY = "\ue002"

Piece = tuple[str, Any]  # ("text", literal) or ("content", index into the example's contents)


def check_template(template: str) -> None:
    """A preset name, or a format string with {instruction} once and {input} at most once (ValueError)."""
    if template in PRESETS:
        return
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"template: {exc} (write a literal brace as {{{{ or }}}})") from None
    unknown = [f for f in fields if f not in PLACEHOLDERS]
    if unknown or fields.count("instruction") != 1 or fields.count("input") > 1:
        raise ValueError(
            f"template: 'alpaca', 'chat', or a prompt with {{instruction}} once and optionally {{input}} once "
            f"(found {fields}; write a literal brace as {{{{ or }}}})"
        )


@dataclass(frozen=True)
class Layout:
    """A rendered prompt shape: its pieces, and the literal text around the reply."""

    pieces: tuple[Piece, ...]
    reply_prefix: str
    reply_suffix: str
    lead: tuple[int, ...]  # special ids the tokenizer puts first (templates; a chat template carries its own)


def _split_marked(text: str, count: int, where: str) -> tuple[Piece, ...]:
    pieces: list[Piece] = []
    pos = 0
    seen: list[int] = []
    for m in _MARK_RE.finditer(text):
        if m.start() > pos:
            pieces.append(("text", text[pos : m.start()]))
        k = int(m.group(1))
        pieces.append(("content", k))
        seen.append(k)
        pos = m.end()
    if pos < len(text):
        pieces.append(("text", text[pos:]))
    if sorted(seen) != list(range(count)):
        raise ConfigError(
            f"{where} renders the message contents {seen} of {list(range(count))}, not each once; it cannot be "
            "cut into template and contents: set task.chat_template to a template that writes each message once, "
            "or use instruction/response columns with task.template: alpaca"
        )
    return tuple(pieces)


class Renderer:
    """The prompt layout of an example, cached by shape (the template and the conversation's roles)."""

    def __init__(self, tokenizer, template: str, chat_template: str | None, style: str):
        self.tokenizer = tokenizer
        self.template = template
        self.chat_template = chat_template
        self.style = style
        self.uses_chat = style == "messages" or template == "chat"
        if self.uses_chat and chat_template is None and not getattr(tokenizer, "chat_template", None):
            name = getattr(tokenizer, "name_or_path", "the tokenizer")
            raise ConfigError(
                f"task.chat_template: {name} has no chat template, which "
                f"{'a messages column' if style == 'messages' else 'task.template: chat'} needs; set "
                "task.chat_template to a Jinja chat template, or use instruction/response columns with "
                "task.template: alpaca"
            )
        self._lead = () if self.uses_chat else tuple(_leading_specials(tokenizer))
        self._eos = tokenizer.eos_token or ""
        self._cache: dict[Any, Layout] = {}

    def contents(self, examples: InstructionExamples, i: int) -> list[str]:
        """The texts that fill the example's prompt, in marker order."""
        if self.style == "messages":
            return [m["content"] for m in examples.context[i]] + [examples.text_a[i]]
        has_input = bool(examples.context[i].strip())
        return [examples.text_a[i], examples.context[i]] if has_input else [examples.text_a[i]]

    def layout(self, examples: InstructionExamples, i: int) -> Layout:
        if self.style == "messages":
            key: Any = ("messages", *(m["role"] for m in examples.context[i]))
        else:
            key = ("columns", bool(examples.context[i].strip()))
        if key not in self._cache:
            self._cache[key] = self._render(examples, i)
        return self._cache[key]

    def _render(self, examples: InstructionExamples, i: int) -> Layout:
        n = len(self.contents(examples, i))
        marks = [_MARK.format(k) for k in range(n)]
        if self.style == "messages":
            roles = [m["role"] for m in examples.context[i]]
            conversation = [{"role": r, "content": marks[k]} for k, r in enumerate(roles)]
            conversation.append({"role": "user", "content": marks[-1]})
            return self._chat(conversation, n)
        if self.template == "chat":
            user = marks[0] if n == 1 else f"{marks[0]}\n\n{marks[1]}"
            return self._chat([{"role": "user", "content": user}], n)
        preset = ALPACA_INPUT if n == 2 else ALPACA_NO_INPUT
        text = preset if self.template == "alpaca" else self.template
        filled = text.format(instruction=marks[0], input=marks[1] if n == 2 else "")
        if n == 2 and marks[1] not in filled:  # a template without {input}: the input is not shown
            raise ConfigError(
                "task.template has no {input}, but rows have an input; add {input} to the template, or set "
                "task.columns.input: null to leave inputs out"
            )
        return Layout(_split_marked(filled, n, "task.template"), "", self._eos, self._lead)

    def _chat(self, conversation: list[dict[str, str]], n: int) -> Layout:
        tok = self.tokenizer
        where = "task.chat_template" if self.chat_template else f"the chat template of {tok.name_or_path}"
        kw: dict[str, Any] = {"tokenize": False}
        if self.chat_template:
            kw["chat_template"] = self.chat_template
        try:
            prompt = tok.apply_chat_template(conversation, add_generation_prompt=True, **kw)
            full = tok.apply_chat_template([*conversation, {"role": "assistant", "content": _REPLY}], **kw)
        except Exception as exc:  # a Jinja error in the template, or a role it refuses
            raise ConfigError(f"{where} failed on a conversation ({type(exc).__name__}: {exc}); fix it") from None
        if not full.startswith(prompt) or full[len(prompt) :].count(_REPLY) != 1:
            raise ConfigError(
                f"{where} does not write a conversation as the generation prompt followed by the reply; set "
                "task.chat_template to one that does, or use instruction/response columns with task.template: alpaca"
            )
        prefix, suffix = full[len(prompt) :].split(_REPLY)
        return Layout(_split_marked(prompt, n, where), prefix, suffix, self._lead)


def fit_lengths(lengths: Sequence[int], budget: int) -> list[int]:
    """Kept lengths of pieces cut to `budget` tokens in all, the longest first (HF longest_first for k pieces)."""
    lengths = [int(x) for x in lengths]
    if sum(lengths) <= budget:
        return lengths
    lo, hi = 0, max(lengths)
    while lo < hi:  # the largest cap c with sum(min(l, c)) <= budget
        mid = (lo + hi + 1) // 2
        if sum(min(x, mid) for x in lengths) <= budget:
            lo = mid
        else:
            hi = mid - 1
    kept = [min(x, lo) for x in lengths]
    spare = budget - sum(kept)
    for k, x in enumerate(lengths):
        if spare and x > lo:
            kept[k] += 1
            spare -= 1
    return kept


@dataclass(frozen=True)
class TokenizedInstructions:
    """Prompt ids and candidate responses per example; the same interface as `TokenizedPrompts`.

    `candidates[i][k]`: the tokens of row i's k-th choice, or the reference alone (k = 0) without choices;
    `labels[i]` picks the one trained on. `complete[i]`: the gold response kept all its tokens.
    """

    ROW_FIELDS: ClassVar[tuple[str, ...]] = ("input_ids", "candidates", "complete")

    input_ids: list[list[int]]
    token_type_ids: None
    labels: np.ndarray
    candidates: list[tuple[tuple[int, ...], ...]]
    complete: list[bool]
    pad_id: int
    vocab_size: int
    has_choices: bool
    exact_match_tokens: int  # references of at most this many tokens are also scored by exact match
    tail_logits: bool = False

    def __post_init__(self) -> None:
        bad = [i for i, (y, c) in enumerate(zip(self.labels, self.candidates, strict=True)) if not 0 <= y < len(c)]
        if bad:
            raise DataError(
                f"instruction rows {bad[:5]} are labelled with choice {int(self.labels[bad[0]])} but have "
                f"{len(self.candidates[bad[0]])} choices; with partition.name=noise (corrupt: labels) every row "
                "needs the same number of choices"
            )

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def prompt_lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids], dtype=np.int64)

    @property
    def gold_lengths(self) -> np.ndarray:
        return np.array([len(c[int(y)]) for c, y in zip(self.candidates, self.labels, strict=True)], dtype=np.int64)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens of prompt + gold response: what a training step processes."""
        return self.prompt_lengths + self.gold_lengths

    @property
    def max_token_id(self) -> int:
        ids = [max(p, default=0) for p in self.input_ids]
        ids += [max(a, default=0) for c in self.candidates for a in c]
        return max(ids, default=0)

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """The training batch: `model(**batch).loss` is the causal LM loss on the gold response tokens.

        With `tail_logits`, vocabulary logits only from the batch's earliest response token on (as
        TokenizedPrompts.batch; HF shifts the labels inside that window, so the loss is the same number).
        """
        out = self.encode(indices)
        if not self.tail_logits:
            return out
        start = int(self.prompt_lengths[[int(i) for i in indices]].min()) - 1
        keep = out["input_ids"].shape[1] - start
        return {**out, "labels": out["labels"][:, start:], "logits_to_keep": keep}

    def encode(self, indices: Sequence[int], candidate: int | None = None) -> dict[str, torch.Tensor]:
        """Right-padded prompt + response (the gold one, or choice `candidate` of every row), all positions."""
        idx = [int(i) for i in indices]
        pick = [int(self.labels[i]) if candidate is None else candidate for i in idx]
        seqs = [(self.input_ids[i], self.candidates[i][k]) for i, k in zip(idx, pick, strict=True)]
        return pad_prompt_answer(seqs, self.pad_id)


def tokenize_instructions(
    tokenizer,
    examples: InstructionExamples,
    max_length: int,
    template: str = "alpaca",
    chat_template: str | None = None,
    exact_match_tokens: int = 16,
) -> TokenizedInstructions:
    """Every example as prompt ids and candidate response ids, cut to `max_length` (module docstring)."""
    renderer = Renderer(tokenizer, template, chat_template, examples.style)
    encoded: dict[str, list[int]] = {}

    def encode_all(texts: list[str]) -> None:
        todo = sorted({t for t in texts if t not in encoded})
        if todo:
            for t, ids in zip(todo, tokenizer(todo, add_special_tokens=False)["input_ids"], strict=True):
                encoded[t] = list(ids)

    rows = []
    for i in range(len(examples)):
        layout = renderer.layout(examples, i)
        contents = renderer.contents(examples, i)
        pieces: list[Piece] = []
        lead_space = [""] * len(contents)
        for k, (kind, value) in enumerate(layout.pieces):
            nxt = layout.pieces[k + 1] if k + 1 < len(layout.pieces) else None
            if kind == "text" and nxt is not None and nxt[0] == "content" and value.endswith(" "):
                value = value[:-1]
                lead_space[nxt[1]] = " "
            if kind == "content" or value:
                pieces.append((kind, value))
        reply_space = ""
        if pieces and pieces[-1][0] == "text" and pieces[-1][1].endswith(" ") and not layout.reply_prefix:
            pieces[-1] = ("text", pieces[-1][1][:-1])  # "Answer: " + "Paris" -> "Answer:" + " Paris"
            reply_space = " "
        replies = list(examples.choices[i]) if examples.choices is not None else [examples.reference(i)]
        spaced = [lead_space[k] + c for k, c in enumerate(contents)]
        rows.append((layout, pieces, spaced, [reply_space + r for r in replies]))
    encode_all([v for _, pieces, _, _ in rows for kind, v in pieces if kind == "text"])
    encode_all([t for _, _, contents, _ in rows for t in contents])
    encode_all([t for _, _, _, replies in rows for t in replies])
    encode_all([t for layout, _, _, _ in rows for t in (layout.reply_prefix, layout.reply_suffix) if t])

    input_ids, candidates, complete = [], [], []
    for i, (layout, pieces, contents, replies) in enumerate(rows):
        fixed = len(layout.lead) + sum(len(encoded[v]) for kind, v in pieces if kind == "text")
        prefix = encoded[layout.reply_prefix] if layout.reply_prefix else []
        suffix = encoded[layout.reply_suffix] if layout.reply_suffix else []
        cands = [tuple(prefix + encoded[r] + suffix) for r in replies]
        if any(not c for c in cands):
            raise DataError(
                f"instruction row {i + 1}: a response tokenises to no tokens (an empty reply, and the tokenizer has "
                "no EOS to end it); fill in the response"
            )
        room = max_length - fixed
        if room < 2:
            raise ConfigError(
                f"task.max_length={max_length} leaves no room for the texts: the prompt template alone takes "
                f"{fixed} tokens; raise task.max_length or shorten task.template"
            )
        content_len = [len(encoded[t]) for t in contents]
        longest = max(len(c) for c in cands)
        keep_reply = min(longest, max(room - sum(content_len), room // 2))
        kept = fit_lengths(content_len, room - keep_reply)
        ids = list(layout.lead)
        for kind, value in pieces:
            ids += encoded[value] if kind == "text" else encoded[contents[value]][: kept[value]]
        input_ids.append(ids)
        candidates.append(tuple(c[:keep_reply] for c in cands))
        complete.append(len(cands[examples.labels[i]]) <= keep_reply)
    return TokenizedInstructions(
        input_ids=input_ids,
        token_type_ids=None,
        labels=np.asarray(examples.labels, dtype=np.int64),
        candidates=candidates,
        complete=complete,
        pad_id=int(tokenizer.pad_token_id),
        vocab_size=len(tokenizer),
        has_choices=examples.choices is not None,
        exact_match_tokens=exact_match_tokens,
    )
