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

from fedlora.data.glue import TextPairs

# A tokenised split with per-row `input_ids`, `token_type_ids` (or None) and `labels` fields:
# data.tokenized.TokenizedPairs or data.prompts.TokenizedPrompts.
Tokenized = TypeVar("Tokenized")


@dataclass(frozen=True)
class Corruption:
    """What a noisy data owner really holds, relative to the clean data."""

    labels: dict[int, int] = field(default_factory=dict)  # example index -> flipped label
    texts: dict[int, tuple[str, str]] = field(default_factory=dict)  # example index -> shuffled (text_a, text_b)
    shares: tuple[float, ...] = ()  # the stated corrupted share of each client

    def __bool__(self) -> bool:
        return bool(self.labels or self.texts)

    def apply(self, pairs: TextPairs) -> TextPairs:
        """The text pairs with every change applied (the input is left untouched)."""
        a, b, y = list(pairs.text_a), list(pairs.text_b), list(pairs.labels)
        for i, label in self.labels.items():
            y[i] = label
        for i, (ta, tb) in self.texts.items():
            a[i], b[i] = ta, tb
        return TextPairs(a, b, y)

    def apply_tokenized(
        self, tokenized: Tokenized, corrupted: TextPairs, tokenize: Callable[[TextPairs], Tokenized]
    ) -> Tokenized:
        """`tokenized` with flipped labels, and the shuffled examples of `corrupted` re-tokenised by `tokenize`."""
        labels = np.array(tokenized.labels, copy=True)
        for i, label in self.labels.items():
            labels[i] = label
        ids = list(tokenized.input_ids)
        types = list(tokenized.token_type_ids) if tokenized.token_type_ids is not None else None
        changed = sorted(self.texts)
        if changed:
            fresh = tokenize(corrupted.subset(changed))
            for row, i in enumerate(changed):
                ids[i] = fresh.input_ids[row]
                if types is not None and fresh.token_type_ids is not None:
                    types[i] = fresh.token_type_ids[row]
        return dataclasses.replace(tokenized, input_ids=ids, token_type_ids=types, labels=labels)

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
