"""The partitioner interface: WHO holds which examples.

A partitioner maps the training split to disjoint index arrays, one per client, every example in exactly
one client. It is seeded and sees only what it needs (labels, token lengths, texts), never a model.

Two optional hooks serve partitioners that do more than split:
- `corrupt(inputs, parts)` returns a `Corruption` (label flips, text shuffles by example index) that the
  experiment applies to the examples before (re-)tokenising them: a noisy data owner really holds noisy data.
- `binning(inputs)` returns the score bins a skew partitioner skews over, so a report can show them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fedlora.data.partitioners.corruption import Corruption
from fedlora.errors import ConfigError
from fedlora.registry import PluginContext, Registry

if TYPE_CHECKING:
    from fedlora.data.partitioners.binned import Binning


@dataclass(frozen=True)
class PartitionInputs:
    labels: np.ndarray
    lengths: np.ndarray | None = None  # tokenised length per example
    text_a: list[str] | None = None
    text_b: list[str] | None = None  # None also for single-text tasks
    columns: Mapping[str, Sequence[Any]] | None = None  # training columns a partitioner asked for (needs_columns)

    def __len__(self) -> int:
        return len(self.labels)


class PartitionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_size: int = Field(2, ge=1, description="fewest examples any client may hold")


class Partitioner(ABC):
    Options: ClassVar[type[BaseModel]] = PartitionOptions

    def __init__(self, options: BaseModel, seed: int):
        self.options = options
        self.seed = seed

    @classmethod
    def from_context(cls, options: BaseModel, context: PluginContext) -> Partitioner:
        """The plugin convention (`registry`): the run's seed from the context; `split` gets the client count."""
        return cls(options, context.seed)

    @abstractmethod
    def split(self, inputs: PartitionInputs, num_clients: int) -> list[np.ndarray]:
        """Disjoint, sorted index arrays covering range(len(inputs)), one per client."""

    def corrupt(self, inputs: PartitionInputs, parts: list[np.ndarray]) -> Corruption | None:
        """Changes to the examples of `parts` (the result of `split`), or None: most partitioners only split."""
        return None

    def binning(self, inputs: PartitionInputs) -> Binning | None:
        """The per-example score bins this partitioner skews over (length, quality), or None."""
        return None

    def needs_columns(self) -> tuple[str, ...]:
        """Columns of the user's own data this partitioner reads (PartitionInputs.columns), e.g. the owner."""
        return ()

    def describe(self, inputs: PartitionInputs, parts: list[np.ndarray]) -> list[dict[str, Any]] | None:
        """Per-client facts for the partition report beyond the common columns (e.g. the owners), or None."""
        return None


PARTITIONERS: Registry[type[Partitioner]] = Registry("partitioner", "partition.name")


def check_partition(parts: list[np.ndarray], n: int, min_size: int) -> list[np.ndarray]:
    """Guard every partitioner's contract: disjoint, complete, no client under `min_size`."""
    allidx = np.concatenate(parts) if parts else np.array([], dtype=np.int64)
    if len(allidx) != n or len(np.unique(allidx)) != n:
        raise AssertionError("partition is not a disjoint cover of the training set")
    small = [i for i, p in enumerate(parts) if len(p) < min_size]
    if small:
        raise ConfigError(
            f"partition: clients {small[:10]} would hold fewer than partition.min_size={min_size} examples; "
            "use fewer clients, a larger alpha, or a smaller min_size"
        )
    return [np.sort(p).astype(np.int64) for p in parts]


def require_enough(n: int, num_clients: int, min_size: int) -> None:
    if n < num_clients * min_size:
        raise ConfigError(
            f"clients.count={num_clients} x partition.min_size={min_size} exceeds the {n} training examples; "
            "lower clients.count or partition.min_size, or raise task.train_limit"
        )
