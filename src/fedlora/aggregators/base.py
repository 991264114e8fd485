"""The aggregator interface: what a weighted combination of adapters means.

A schedule never touches tensors; it hands the aggregator terms [(w_i, adapter_i)] (weights may be
negative, e.g. FedBuff's x + lr * sum w (x_i - x_start)) and gets one adapter back. `distribute` says
what a client of a given rank receives from the global adapter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from fedlora.errors import ConfigError
from fedlora.lora.adapter import Adapter
from fedlora.lora.algebra import Term, rescale_alpha
from fedlora.registry import Registry


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Aggregator(ABC):
    """Subclass, set `Options` (a pydantic model), implement `combine`, and register the class."""

    Options: ClassVar[type[BaseModel]] = NoOptions
    #: A is frozen at a shared seeded initialisation and only B is trained (FFA-LoRA).
    freezes_A: ClassVar[bool] = False
    #: the combination is merged into the base weights every version and clients start fresh adapters.
    merges_into_base: ClassVar[bool] = False
    #: clients may hold adapters of different ranks.
    supports_mixed_ranks: ClassVar[bool] = True

    def __init__(self, rank: int, seed: int = 0, **options: Any):
        """`seed` is the run's seed: every random draw of an aggregator (FFA's frozen A, HLoRA's range finder,
        zero-padding's revived directions) derives from it, so seeds differ in those draws too."""
        if rank < 1:
            raise ConfigError(f"aggregator rank must be >= 1, got {rank}")
        self.rank = int(rank)
        self.seed = int(seed)
        try:
            self.options = self.Options.model_validate(options)
        except ValidationError as exc:
            problems = "; ".join(
                f"aggregator.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"{type(self).__name__} options: {problems}") from None
        #: numbers about the last `combine` (energy lost to truncation, bias...): logged with the aggregation
        self.last_diagnostics: dict[str, float] = {}

    @abstractmethod
    def combine(self, terms: Sequence[Term]) -> Adapter:
        """The adapter that stands for sum_i w_i * adapter_i."""

    def distribute(self, adapter: Adapter, rank: int, alpha: float) -> Adapter:
        """What a client of `rank` receives; the default keeps factors and re-expresses them for `alpha`."""
        if adapter.max_rank != rank or any(r != rank for r in adapter.ranks.values()):
            raise ConfigError(
                f"aggregator {type(self).__name__} cannot give a rank-{rank} client a rank-{adapter.max_rank} "
                "adapter; use a heterogeneous-rank aggregator (e.g. aggregator.name: hlora) or equal ranks"
            )
        return rescale_alpha(adapter, alpha)

    def download_nbytes(self, start: Adapter, since_version: int, version: int) -> int:
        """Bytes a client downloads when dispatched at `version` after last syncing at `since_version`.

        Usually just the adapter it starts from; aggregators that merge into the base weights (FLoRA) add
        what the client must fold into its own copy of the base.
        """
        return start.nbytes


AGGREGATORS: Registry[type[Aggregator]] = Registry("aggregator", "aggregator.name")


def get_aggregator(name: str, rank: int, seed: int = 0, **options: Any) -> Aggregator:
    """`get_aggregator("hlora", rank=16, seed=run_seed, sigma="split").combine([(0.5, a), (0.5, b)])`."""
    return AGGREGATORS.get(name)(rank, seed=seed, **options)
