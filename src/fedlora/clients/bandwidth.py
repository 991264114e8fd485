"""Per-client network bandwidth: what a job's transfer time is divided by in the cost model.

A heterogeneous world differs in links as much as in compute: a phone on a cellular link uploads an
adapter far slower than a server in a data centre. Config `clients.bandwidth` is one number (bytes per
virtual second, every client), one number per client, or a profile: `scale` times relative factors drawn
like speeds but from their own seeded stream, so bandwidth is independent of compute speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedlora.clients.speeds import draw_speeds


def draw_bandwidth(spec: float | Sequence[float] | object, count: int, seed: int) -> np.ndarray:
    """Bytes per virtual second for each client from a number, a list, or an object with `scale` and `profile`."""
    if isinstance(spec, (int, float)):
        return np.full(count, float(spec))
    if isinstance(spec, Sequence):
        if len(spec) != count:
            raise ValueError(f"clients.bandwidth lists {len(spec)} values for {count} clients")
        return np.asarray(spec, dtype=float)
    scale = float(spec.scale)  # type: ignore[attr-defined]
    return scale * draw_speeds(spec.profile, count, seed, purpose="bandwidth")  # type: ignore[attr-defined]
