"""Client speed profiles: how fast each simulated client trains relative to speed 1.

Heavy-tailed profiles (Pareto, Zipf) are what make stragglers: under Pareto(1) the slowest of 20 clients
is typically ten times slower than the median. Draws are seeded, so the simulated world is reproducible.
"""

from __future__ import annotations

import numpy as np

from fedlora.seeding import numpy_rng

#: clients.speeds.name -> what it draws (one line each; `fedlora methods` lists them)
SPEED_PROFILES = {
    "constant": "every client at speed `value`",
    "uniform": "speeds drawn uniformly from [low, high]",
    "normal": "speeds drawn from Normal(mean, std), clipped at min_speed",
    "pareto": "job durations Pareto(shape)-distributed: heavy-tailed stragglers",
    "zipf": "the k-th client's speed proportional to 1/k^shape, clients in seeded random order",
    "list": "the speeds are given: `values` lists one per client",
}


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
