"""The schedule interface: WHEN the server combines, and with which weights.

A schedule sees read-only server state (`ServerView`), reacts to arrivals and timers, and answers with a
`Step`: optionally a combination [(w, adapter)] for the aggregator, clients to dispatch next (they get the
global adapter as it is after the combination), a reason to drop the arrival, a wake-up time.
It never touches tensors, so every schedule works with every aggregator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from fedlora.errors import ConfigError
from fedlora.jobs import Job, JobResult
from fedlora.lora.adapter import Adapter
from fedlora.registry import PluginContext, Registry


class ServerView(Protocol):
    """What a schedule may read. Implemented by the engine's server."""

    @property
    def version(self) -> int: ...
    @property
    def now(self) -> float: ...
    @property
    def global_adapter(self) -> Adapter: ...
    @property
    def num_clients(self) -> int: ...
    def idle_clients(self) -> list[int]:
        """Clients with no job in flight that are available (online) now, ascending."""
        ...

    def busy_clients(self) -> list[int]:
        """Clients with a job in flight, ascending."""
        ...

    def next_online_time(self) -> float | None:
        """The earliest virtual time after now at which an offline client with no job comes back; None if none."""
        ...

    def client_samples(self, client: int) -> int: ...


@dataclass
class Step:
    combine: list[tuple[float, Adapter]] | None = None
    dispatch: list[int] = field(default_factory=list)
    drop: str | None = None  # the arrival is discarded and counted under this reason
    wake_at: float | None = None  # virtual time for `on_timer`
    timer_tag: int = 0
    tag: int = 0  # given to the jobs in `dispatch`
    info: dict[str, Any] = field(default_factory=dict)  # recorded with the aggregation event


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Schedule(ABC):
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel, num_clients: int, seed: int):
        self.check_options(options, num_clients)
        self.options = options
        self.num_clients = num_clients
        self.seed = seed

    @classmethod
    def from_context(cls, options: BaseModel, context: PluginContext) -> Schedule:
        """The plugin convention (`registry`): the client count and the run's seed from the context."""
        return cls(options, context.num_clients, context.seed)

    @classmethod
    def check_options(cls, options: BaseModel, num_clients: int) -> None:
        """Raise `ConfigError` naming the field if the options cannot work with `num_clients` clients."""
        return None

    @abstractmethod
    def start(self, view: ServerView) -> Step:
        """The first dispatches."""

    @abstractmethod
    def on_arrival(self, result: JobResult, view: ServerView) -> Step: ...

    def on_timer(self, tag: int, view: ServerView) -> Step:
        return Step()

    def on_failure(self, job: Job, view: ServerView) -> Step:
        """`job` did not come back (crash, client offline) or was rejected; its client is free again.

        The failure is already counted by the server; the schedule decides what happens next (e.g. give
        the work to another client, or close a round with fewer results). By default nothing happens.
        """
        return Step()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (adapters allowed inside); the default: no state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


SCHEDULES: Registry[type[Schedule]] = Registry("schedule", "schedule.name")


def check_at_most_clients(field_name: str, value: int | None, num_clients: int) -> None:
    """A per-round or concurrency count cannot exceed the number of clients."""
    if value is not None and value > num_clients:
        raise ConfigError(
            f"schedule.{field_name}={value} exceeds clients.count={num_clients}; "
            f"lower schedule.{field_name} (or null for all clients) or raise clients.count"
        )


def sample_weights(results: Sequence[JobResult], weighting: str) -> list[float]:
    """Normalised combination weights: by the clients' sample counts, or uniform."""
    raw = [1.0] * len(results) if weighting == "uniform" else [float(r.num_samples) for r in results]
    total = sum(raw)
    return [x / total for x in raw]
