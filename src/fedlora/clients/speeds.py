"""Client speed profiles: how fast each simulated client trains relative to speed 1.

Heavy-tailed profiles (Pareto, Zipf) are what make stragglers: under Pareto(1) the slowest of 20 clients
is typically ten times slower than the median. Draws are seeded, so the simulated world is reproducible.
"""

from __future__ import annotations

import numpy as np

from fedlora.seeding import numpy_rng


def draw_speeds(profile, count: int, seed: int, purpose: str = "speeds") -> np.ndarray:
    """One speed per client from a `SpeedConfig`-like profile (name, value, low, high, mean, std, shape...).

    `purpose` separates independent draws from the same kind of profile (e.g. bandwidth factors).
    """
    rng = numpy_rng(seed, purpose)
    name = profile.name
    if name == "constant":
        speeds = np.full(count, profile.value, dtype=float)
    elif name == "uniform":
        speeds = rng.uniform(profile.low, profile.high, size=count)
    elif name == "normal":
        speeds = rng.normal(profile.mean, profile.std, size=count)
    elif name == "pareto":
        # a client's *duration* is Pareto-distributed (classic straggler model); speed is its inverse
        speeds = 1.0 / (1.0 + rng.pareto(profile.shape, size=count))
    elif name == "zipf":
        # speed of the k-th client proportional to 1/k^shape, assigned to clients in random order
        ranks = rng.permutation(count) + 1
        speeds = 1.0 / ranks.astype(float) ** profile.shape
    elif name == "list":
        speeds = np.asarray(profile.values, dtype=float)
    else:  # pragma: no cover - the config model forbids it
        raise ValueError(f"unknown speed profile {name}")
    return np.maximum(speeds, profile.min_speed)
