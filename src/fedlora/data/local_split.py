"""Each client's local validation split, carved from its own partition (config `eval.local_val_share`).

Why: a global dev set measures the global model on the population; a non-IID factor (context length,
context quality) may hurt a client's own distribution while the global number barely moves. A client can
only measure that on data it holds, so each one sets aside a share of its partition and never trains on it.

The carve is seeded per client (purpose `local-val`), so it depends only on (seed, client, partition), not on
the number of clients before it. A client keeps at least one training example: a share above zero holds out
round(share * n) examples, at least one and at most n - 1 (none for a client of one example).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedlora.seeding import numpy_rng


def held_out_count(size: int, share: float) -> int:
    if share <= 0 or size < 2:
        return 0
    return int(min(size - 1, max(1, round(share * size))))


def carve_local_validation(
    partitions: Sequence[np.ndarray], share: float, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training part, local validation part) of every client, each sorted; together they are the partition."""
    train, val = [], []
    for client, part in enumerate(partitions):
        part = np.asarray(part, dtype=np.int64)
        k = held_out_count(len(part), share)
        order = numpy_rng(seed, "local-val", client).permutation(part)
        val.append(np.sort(order[:k]))
        train.append(np.sort(order[k:]))
    return train, val
