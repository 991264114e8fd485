"""Which dispatched jobs never come back, and when the server finds out.

A job fails if its client goes offline before the job would arrive (reason `offline`, at the moment it
drops) or, with probability `failure_prob`, because it crashes (reason `crash`, at a uniformly drawn
moment of the job). The fate of a job is decided when it is dispatched, from (seed, "job-failure",
client, client_job) and the client's availability, so it never depends on event order, and a failing job
is never sent to the transport: no compute is wasted on a result nobody will see.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedlora.clients.availability import Availability
from fedlora.jobs import Job
from fedlora.seeding import numpy_rng


@dataclass(frozen=True)
class Faults:
    seed: int
    failure_prob: float = 0.0
    availability: Availability | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_prob < 1.0:
            raise ValueError(f"failure_prob must be in [0, 1), got {self.failure_prob}")

    def fate(self, job: Job) -> tuple[float, str] | None:
        """(virtual time, reason) at which `job` fails, or None if it arrives."""
        fates: list[tuple[float, str]] = []
        if self.failure_prob > 0:
            rng = numpy_rng(self.seed, "job-failure", job.client, job.client_job)
            if rng.random() < self.failure_prob:
                u = float(rng.random())
                fates.append((job.dispatch_time + u * (job.arrival_time - job.dispatch_time), "crash"))
        if self.availability is not None:
            off = self.availability.next_offline(job.client, job.dispatch_time)
            if off < job.arrival_time:
                fates.append((off, "offline"))
        return min(fates) if fates else None

    def online(self, client: int, t: float) -> bool:
        return self.availability is None or self.availability.online(client, t)
