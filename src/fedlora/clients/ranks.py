"""Rank policies: which LoRA rank each client trains (config `clients.ranks`).

`uniform` (everyone at r_max), `list` (given), `speed_tier` (slow hardware trains low ranks), `data_size`
(the HLoRA prototype's percentile rule), `random` (seeded draws). A policy sees the client count, the
server's rank r_max, the drawn client speeds and the partition sizes, so it can give slow or data-poor
clients lower ranks. Ranks above r_max are config errors naming the field. Add one: a class here (or in
a new module) that registers itself in RANK_POLICIES.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedlora.errors import ConfigError
from fedlora.registry import PluginContext, Registry
from fedlora.seeding import numpy_rng


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RankPolicy(ABC):
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel):
        self.options = options

    @classmethod
    def from_context(cls, options: BaseModel, context: PluginContext) -> RankPolicy:
        """The plugin convention (`registry`); `assign` gets the count, r_max and seed of the run."""
        return cls(options)

    @abstractmethod
    def assign(self, count: int, r_max: int, speeds: np.ndarray, samples: np.ndarray, seed: int) -> list[int]:
        """One rank per client, each in 1..r_max."""


RANK_POLICIES: Registry[type[RankPolicy]] = Registry("rank policy", "clients.ranks.name")


@RANK_POLICIES.register("uniform")
class Uniform(RankPolicy):
    """Every client trains at the server's rank r_max (= lora.rank): the homogeneous setting."""

    def assign(self, count: int, r_max: int, speeds: np.ndarray, samples: np.ndarray, seed: int) -> list[int]:
        return [r_max] * count


def _ladder(r_max: int) -> list[int]:
    """Default tiers: r_max/8, r_max/4, r_max/2, r_max (at least 1, duplicates removed)."""
    return sorted({max(1, r_max // f) for f in (8, 4, 2, 1)})


def _check_within(values: list[int], r_max: int, field: str) -> None:
    for v in values:
        if not 1 <= v <= r_max:
            raise ConfigError(f"{field}: rank {v} is outside 1..lora.rank={r_max}; lower it or raise lora.rank")


class ListOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: list[int] = Field(..., min_length=1, description="one rank per client, in client order")


@RANK_POLICIES.register("list")
class Explicit(RankPolicy):
    """The ranks are given: `values` lists one rank per client."""

    Options = ListOptions
    options: ListOptions

    def assign(self, count: int, r_max: int, speeds: np.ndarray, samples: np.ndarray, seed: int) -> list[int]:
        values = list(self.options.values)
        if len(values) != count:
            raise ConfigError(
                f"clients.ranks.values lists {len(values)} ranks but clients.count is {count}; give one per client"
            )
        _check_within(values, r_max, "clients.ranks.values")
        return values


class SpeedTierOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tiers: list[int] | None = Field(
        None, min_length=1, description="ranks from slowest to fastest tier; null = r_max/8, r_max/4, r_max/2, r_max"
    )


@RANK_POLICIES.register("speed_tier")
class SpeedTier(RankPolicy):
    """Slower clients train lower ranks (weak hardware): clients are sorted by speed and cut into as many
    equal-count tiers as `tiers` has entries; the slowest quantile gets tiers[0], the fastest tiers[-1].
    Equal speeds are ordered by client index, so a constant speed profile still spreads the tiers."""

    Options = SpeedTierOptions
    options: SpeedTierOptions

    def assign(self, count: int, r_max: int, speeds: np.ndarray, samples: np.ndarray, seed: int) -> list[int]:
        tiers = sorted(self.options.tiers) if self.options.tiers else _ladder(r_max)
        _check_within(tiers, r_max, "clients.ranks.tiers")
        order = np.argsort(np.asarray(speeds, dtype=float), kind="stable")  # slowest first
        ranks = [0] * count
        for position, client in enumerate(order):
            ranks[int(client)] = tiers[position * len(tiers) // count]
        return ranks


@RANK_POLICIES.register("data_size")
class DataSize(RankPolicy):
    """HLoRA prototype's rule: r_k = max(1, floor(pct_k * r_max)), where pct_k is the share of clients
    holding at most as many examples as client k (the largest client gets r_max)."""

    def assign(self, count: int, r_max: int, speeds: np.ndarray, samples: np.ndarray, seed: int) -> list[int]:
        sizes = np.asarray(samples, dtype=float)
        pct = np.array([(sizes <= s).sum() / count for s in sizes])
        return [max(1, int(np.floor(p * r_max + 1e-9))) for p in pct]


class RandomOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    choices: list[int] | None = Field(None, min_length=1, description="ranks to draw from; null = the default tiers")
    probs: list[float] | None = Field(None, description="their probabilities; null = uniform")

    @model_validator(mode="after")
    def _check(self) -> RandomOptions:
        if self.probs is not None:
            if self.choices is None or len(self.probs) != len(self.choices):
                raise ValueError("probs: give one probability per entry of choices")
            if any(p < 0 for p in self.probs) or sum(self.probs) <= 0:
                raise ValueError("probs: must be non-negative and not all zero")
        return self


@RANK_POLICIES.register("random")
class RandomRanks(RankPolicy):
    """Each client draws its rank from `choices` with `probs`, seeded by (seed, 'ranks'): reproducible."""

    Options = RandomOptions
    options: RandomOptions

    def assign(self, count: int, r_max: int, speeds: np.ndarray, samples: np.ndarray, seed: int) -> list[int]:
        choices = list(self.options.choices) if self.options.choices else _ladder(r_max)
        _check_within(choices, r_max, "clients.ranks.choices")
        probs = None
        if self.options.probs is not None:
            total = sum(self.options.probs)
            probs = [p / total for p in self.options.probs]
        rng = numpy_rng(seed, "ranks")
        return [int(r) for r in rng.choice(choices, size=count, p=probs)]
