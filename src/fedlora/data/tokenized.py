"""Sentence pairs tokenised once, then batched with padding to the longest pair in the batch.

Padding to the batch's longest pair instead of a fixed length is the single largest CPU saving
(MRPC pairs are at most ~103 tokens, most far fewer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from fedlora.data.glue import TextPairs


class TokenizedData(Protocol):
    """What training and evaluation need of a tokenised split, whatever the task kind.

    `TokenizedPairs` (classification) and `data.prompts.TokenizedPrompts` (causal_lm) both satisfy it:
    `model(**data.batch(indices)).loss` is the training loss of either kind (a batch holds tensors, and may
    hold other model keyword arguments such as `logits_to_keep`).
    """

    labels: np.ndarray
    pad_id: int

    def __len__(self) -> int: ...

    @property
    def lengths(self) -> np.ndarray: ...

    def batch(self, indices: Sequence[int]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TokenizedPairs:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids], dtype=np.int64)

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = [int(i) for i in indices]
        width = max(len(self.input_ids[i]) for i in idx)
        ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        types = torch.zeros((len(idx), width), dtype=torch.long) if self.token_type_ids is not None else None
        for row, i in enumerate(idx):
            seq = self.input_ids[i]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            if types is not None:
                types[row, : len(seq)] = torch.tensor(self.token_type_ids[i])
        out = {"input_ids": ids, "attention_mask": mask, "labels": torch.as_tensor(self.labels[idx], dtype=torch.long)}
        if types is not None:
            out["token_type_ids"] = types
        return out


def tokenize_pairs(tokenizer, pairs: TextPairs, max_length: int) -> TokenizedPairs:
    enc = tokenizer(pairs.text_a, pairs.text_b, truncation=True, max_length=max_length)
    types = enc.get("token_type_ids")
    return TokenizedPairs(
        input_ids=[list(x) for x in enc["input_ids"]],
        token_type_ids=[list(x) for x in types] if types is not None else None,
        labels=np.asarray(pairs.labels, dtype=np.int64),
        pad_id=int(tokenizer.pad_token_id),
    )
