"""Client speed profiles: how fast each simulated client trains relative to speed 1.

Heavy-tailed profiles (Pareto, Zipf) are what make stragglers: under Pareto(1) the slowest of 20 clients
is typically ten times slower than the median. Draws are seeded, so the simulated world is reproducible.
A profile is a registered class like every other plugin (`registry`); they share one options section,
`clients.speeds` (config.SpeedConfig), and each reads its own fields of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from fedlora.registry import PluginContext, Registry
from fedlora.seeding import numpy_rng


class SpeedProfile(ABC):
    #: the profiles share the clients.speeds section (SpeedConfig), validated with the config
    Options: ClassVar[type[BaseModel]] = BaseModel

    def __init__(self, options: Any):
        self.options = options

    @classmethod
    def from_context(cls, options: Any, context: PluginContext) -> SpeedProfile:
        return cls(options)

    @abstractmethod
    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """One speed per client (before the `min_speed` clip)."""


SPEED_PROFILES: Registry[type[SpeedProfile]] = Registry("speed profile", "clients.speeds.name")


@SPEED_PROFILES.register("constant")
class Constant(SpeedProfile):
    """Every client at speed `value`."""

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(count, self.options.value, dtype=float)


@SPEED_PROFILES.register("uniform")
class Uniform(SpeedProfile):
    """Speeds drawn uniformly from [low, high]."""

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.options.low, self.options.high, size=count)


@SPEED_PROFILES.register("normal")
class Normal(SpeedProfile):
    """Speeds drawn from Normal(mean, std), clipped at min_speed."""

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(self.options.mean, self.options.std, size=count)


@SPEED_PROFILES.register("pareto")
class Pareto(SpeedProfile):
    """Job durations Pareto(shape)-distributed: heavy-tailed stragglers."""

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        # a client's *duration* is Pareto-distributed (classic straggler model); speed is its inverse
        return 1.0 / (1.0 + rng.pareto(self.options.shape, size=count))


@SPEED_PROFILES.register("zipf")
class Zipf(SpeedProfile):
    """The k-th client's speed proportional to 1/k^shape, clients in seeded random order."""

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        ranks = rng.permutation(count) + 1
        return 1.0 / ranks.astype(float) ** self.options.shape


@SPEED_PROFILES.register("list")
class Given(SpeedProfile):
    """The speeds are given: `values` lists one per client."""

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.options.values, dtype=float)


def draw_speeds(profile, count: int, seed: int, purpose: str = "speeds") -> np.ndarray:
    """One speed per client from a `SpeedConfig`-like profile (name, value, low, high, mean, std, shape...).

    `purpose` separates independent draws from the same kind of profile (e.g. bandwidth factors).
    """
    rng = numpy_rng(seed, purpose)
    chosen = SPEED_PROFILES.build(profile.name, profile, PluginContext(seed=seed, num_clients=count))
    return np.maximum(chosen.draw(count, rng), profile.min_speed)
