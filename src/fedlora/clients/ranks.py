"""Rank policies: which LoRA rank each client trains (config `clients.ranks`).

A policy sees the client count, the server's rank r_max, the drawn client speeds and the partition sizes,
so it can give slow or data-poor clients lower ranks. Add one: a class here (or in a new module) that
registers itself in RANK_POLICIES.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from fedlora.registry import Registry


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RankPolicy(ABC):
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel):
        self.options = options

    @abstractmethod
    def assign(self, count: int, r_max: int, speeds: np.ndarray, samples: np.ndarray, seed: int) -> list[int]:
        """One rank per client, each in 1..r_max."""


RANK_POLICIES: Registry[type[RankPolicy]] = Registry("rank policy", "clients.ranks.name")


@RANK_POLICIES.register("uniform")
class Uniform(RankPolicy):
    """Every client trains at the server's rank r_max (= lora.rank): the homogeneous setting."""

    def assign(self, count: int, r_max: int, speeds: np.ndarray, samples: np.ndarray, seed: int) -> list[int]:
        return [r_max] * count
