"""Explicit corruption of training examples: labels flipped and texts shuffled, by example index.

A partitioner that models noisy data owners (`noise`) returns a `Corruption`; the experiment applies it to
the text pairs and re-tokenises only the examples whose text changed. Keeping the changes as plain data
(index -> new value) makes them easy to count in a report and to check in a test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

# Examples: one split of any task, with text_a, text_b (or None), labels and subset(): data.glue.TextPairs,
# data.classification_task.LabelledTexts or data.instruction.InstructionExamples.
Examples = TypeVar("Examples")
# A tokenised split with per-row `input_ids`, `token_type_ids` (or None) and `labels` fields:
# data.tokenized.TokenizedPairs or data.prompts.TokenizedPrompts.
Tokenized = TypeVar("Tokenized")


@dataclass(frozen=True)
class Corruption:
    """What a noisy data owner really holds, relative to the clean data."""

    labels: dict[int, int] = field(default_factory=dict)  # example index -> flipped label
    # example index -> shuffled (text_a, text_b); text_b None for single-text tasks
    texts: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    shares: tuple[float, ...] = ()  # the stated corrupted share of each client

    def __bool__(self) -> bool:
        return bool(self.labels or self.texts)

    def apply(self, pairs: Examples) -> Examples:
        """The examples with every change applied (the input is left untouched).

        Any frozen dataclass with text_a, text_b (or None) and labels works: GLUE's TextPairs, and the own-data
        tasks' LabelledTexts and InstructionExamples, whose other fields (owners, inputs, choices) are kept.
        """
        a, y = list(pairs.text_a), list(pairs.labels)
        b = None if pairs.text_b is None else list(pairs.text_b)
        for i, label in self.labels.items():
            y[i] = label
        for i, (ta, tb) in self.texts.items():
            a[i] = ta
            if b is not None:
                b[i] = tb
        return dataclasses.replace(pairs, text_a=a, text_b=b, labels=y)

    def apply_tokenized(
        self, tokenized: Tokenized, corrupted: Examples, tokenize: Callable[[Examples], Tokenized]
    ) -> Tokenized:
        """`tokenized` with flipped labels, and the shuffled examples of `corrupted` re-tokenised by `tokenize`.

        The per-row fields replaced are `input_ids` and `token_type_ids`, or the split's own `ROW_FIELDS`
        (data.instruction_tokens: the responses are rows too).
        """
        labels = np.array(tokenized.labels, copy=True)
        for i, label in self.labels.items():
            labels[i] = label
        names = getattr(tokenized, "ROW_FIELDS", ("input_ids", "token_type_ids"))
        rows = {n: None if getattr(tokenized, n) is None else list(getattr(tokenized, n)) for n in names}
        changed = sorted(self.texts)
        if changed:
            fresh = tokenize(corrupted.subset(changed))
            for row, i in enumerate(changed):
                for n, values in rows.items():
                    if values is not None and getattr(fresh, n) is not None:
                        values[i] = getattr(fresh, n)[row]
        return dataclasses.replace(tokenized, **rows, labels=labels)

    def per_client(self, parts: list[np.ndarray]) -> list[dict[str, float | int]]:
        """For each client: the stated share and how many of its examples have a flipped label / shuffled text."""
        flipped = np.zeros(sum(len(p) for p in parts), dtype=bool)
        shuffled = np.zeros_like(flipped)
        flipped[list(self.labels)] = True
        shuffled[list(self.texts)] = True
        return [
            {
                "share": float(self.shares[c]) if c < len(self.shares) else 0.0,
                "flipped": int(flipped[p].sum()),
                "shuffled": int(shuffled[p].sum()),
            }
            for c, p in enumerate(parts)
        ]
