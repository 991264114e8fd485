"""What travels between server and clients: a dispatched job and its result.

Shared by the engine, the schedules and the transports, so it sits below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fedlora.lora.adapter import Adapter

#: which LoRA factors a job trains (the aggregator's `trains` hook): both, or one with the other frozen
Trains = Literal["AB", "A", "B"]
TRAINS: tuple[Trains, ...] = ("AB", "A", "B")


@dataclass(frozen=True)
class Job:
    """One unit of local training. Its arrival time is fixed at dispatch by the cost model."""

    job_id: int
    client: int
    client_job: int  # how many jobs this client had before this one: a coordinate of its random draws
    rank: int
    alpha: float
    start_version: int
    start_adapter: Adapter
    steps: int
    dispatch_time: float
    arrival_time: float
    bytes_down: int
    bytes_up: int
    tag: int = 0  # schedule-defined (e.g. the synchronous round this job belongs to)
    trains: Trains = "AB"  # the factors the client trains; the other one stays as it was sent
    base_version: int = 0  # how many folds into the frozen base the client trains on (engine.frozen_base)


@dataclass(frozen=True)
class JobResult:
    job: Job
    adapter: Adapter
    num_samples: int  # size of the client's training partition: the usual FedAvg weight
    samples_trained: int  # examples seen in this job (steps x batch size)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def client(self) -> int:
        return self.job.client
