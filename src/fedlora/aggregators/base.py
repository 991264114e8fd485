"""The aggregator interface: what a weighted combination of adapters means, and what else a method changes.

A schedule never touches tensors; it hands the aggregator terms [(w_i, adapter_i)] (weights may be
negative, e.g. FedBuff's x + lr * sum w (x_i - x_start)) and gets one adapter back. `distribute` says
what a client of a given rank receives from the global adapter.

A federated-LoRA method is more than its combination, so the base class also has hooks, each a no-op by
default, that the engine, the transports and local training call; no other module names a method:

- `trains(version)`: which factors a client trains in a job dispatched at `version` ("AB", "A" or "B"; the
  other stays as it was sent). FFA-LoRA: always "B"; RoLoRA: alternating.
- `after_combine(combined, terms, version, base)`: what happens after a combination; `base.fold(deltas)`
  adds dense updates to the frozen base weights (FLoRA merges the update and restarts clients from fresh
  adapters; FedEx-LoRA folds the residual the averaged factors miss). A client trains on the base as it
  was when its job was dispatched, on every transport and after a resume (engine.frozen_base).
- `keep(trained)` and `personalize(received, kept)`: per-client state a client keeps across its own jobs
  and never sends (FedSA-LoRA's local B). The engine holds what `keep` returns for each client (and
  checkpoints it); a client's next job starts from `personalize(distribute(global), kept)`.
- `upload_nbytes` / `download_nbytes`: the bytes a job really moves (RoLoRA's one factor, FedSA's A).
- `state_dict` / `load_state_dict`: the aggregator's own state, checkpointed with the server's.

The shape follows peft's `LoraVariant` (a variant overrides the steps it changes, the caller runs them) and
Flower's `Strategy.start(grid=...)` (the caller passes in what the extension may act on).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor

from fedlora.errors import ConfigError
from fedlora.jobs import Trains
from fedlora.lora.adapter import Adapter
from fedlora.lora.algebra import Term, rescale_alpha
from fedlora.registry import PluginContext, Registry


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseFolder(Protocol):
    """What `after_combine` may change besides the adapter: the frozen base weights (engine.frozen_base)."""

    def fold(self, deltas: Mapping[str, Tensor]) -> None:
        """Add one dense update per layer (d_out x d_in, summed in float64) to the frozen base weights."""
        ...


class Aggregator(ABC):
    """Subclass, set `Options` (a pydantic model), implement `combine`, override the hooks it needs, register."""

    Options: ClassVar[type[BaseModel]] = NoOptions
    #: clients may hold adapters of different ranks.
    supports_mixed_ranks: ClassVar[bool] = True
    #: the space central DP clips and noises in (fedlora.privacy): "factor" (the combination is linear in the
    #: factors), "product" (a truncated SVD of the sum of effective updates), None (the result depends on the
    #: individual updates beyond their sum: only client-side noise, privacy.where: client, applies)
    privacy_space: ClassVar[str | None] = None

    def __init__(self, rank: int, seed: int = 0, options: BaseModel | None = None, **kwargs: Any):
        """`seed` is the run's seed: every random draw of an aggregator (FFA's frozen A, HLoRA's range finder,
        zero-padding's revived directions) derives from it, so seeds differ in those draws too. `options` are
        validated options (a config's, through `from_context`); keyword options are validated here."""
        if rank < 1:
            raise ConfigError(f"aggregator rank must be >= 1, got {rank}")
        self.rank = int(rank)
        self.seed = int(seed)
        if options is not None:
            if kwargs or not isinstance(options, self.Options):
                raise TypeError(f"{type(self).__name__}: give validated {self.Options.__name__} or keywords")
            self.options = options
        else:
            try:
                self.options = self.Options.model_validate(kwargs)
            except ValidationError as exc:
                problems = "; ".join(
                    f"aggregator.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
                )
                raise ConfigError(f"{type(self).__name__} options: {problems}") from None
        #: numbers about the last `combine` (energy lost to truncation, bias...): logged with the aggregation
        self.last_diagnostics: dict[str, float] = {}

    @classmethod
    def from_context(cls, options: BaseModel, context: PluginContext) -> Aggregator:
        """The plugin convention (`registry`): the server's rank r_max and the run's seed from the context."""
        return cls(context.r_max, seed=context.seed, options=options)

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

    # ----- hooks: what a method changes besides the combination (no-ops by default) ----------------------
    def trains(self, version: int) -> Trains:
        """The factors a client trains in a job dispatched at `version`: "AB" (both), "A" or "B"."""
        return "AB"

    def after_combine(self, combined: Adapter, terms: Sequence[Term], version: int, base: BaseFolder) -> Adapter:
        """The global adapter of the new `version` from the combination of `terms`; may fold into `base`.

        `terms` are those `combine` was given (an update rejected there replaced by its job's start adapter).
        """
        return combined

    def keep(self, trained: Adapter) -> Adapter | None:
        """What a client keeps of an adapter it trained, for its own next jobs (None: nothing)."""
        return None

    def personalize(self, received: Adapter, kept: Adapter | None) -> Adapter:
        """What a client starts a job from, given what the server sent and what it kept (None: nothing yet)."""
        return received

    @property
    def personalizes(self) -> bool:
        """Whether clients keep state, so that each client's model differs from the global one."""
        return type(self).personalize is not Aggregator.personalize

    def upload_nbytes(self, start: Adapter, trains: Trains) -> int:
        """Bytes a client uploads for a job that started from `start`; by default the whole adapter."""
        return start.nbytes

    def download_nbytes(self, start: Adapter, since_version: int, version: int) -> int:
        """Bytes a client downloads when dispatched at `version` after last syncing at `since_version`.

        Usually just the adapter it starts from; aggregators that merge into the base weights (FLoRA) add
        what the client must fold into its own copy of the base.
        """
        return start.nbytes

    def state_dict(self) -> dict[str, Any]:
        """What `combine` and the hooks need to continue exactly after a resume (tensors allowed)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


AGGREGATORS: Registry[type[Aggregator]] = Registry("aggregator", "aggregator.name")


def get_aggregator(name: str, rank: int, seed: int = 0, **options: Any) -> Aggregator:
    """`get_aggregator("hlora", rank=16, seed=run_seed, sigma="split").combine([(0.5, a), (0.5, b)])`."""
    return AGGREGATORS.get(name)(rank, seed=seed, **options)
