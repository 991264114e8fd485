"""The shared machinery of the asynchronous schedules: keep `concurrency` clients training at all times.

Asynchronous FL removes the round barrier, so a free client should never wait for others: whenever a job
ends (arrival, failure, rejection) the schedule tops the number of clients in flight back up to
`concurrency` (FedBuff, Nguyen et al. 2022, Alg. 1; FedAsync, Xie et al. 2019, Alg. 1). Who gets the
work is deterministic: a seeded uniform draw among idle, online clients (`next_client: random`, the default
of every schedule, FedBuff's sampling) or the client that just finished (`same`, the worker loop of the
FedAsync and FedFa papers), never the order in which a transport happened to finish. When every free client
is offline the schedule asks to be woken when the first one comes back.

`same` is only fair when every client trains at once (`concurrency` null): with `concurrency` 5 of 20 the
five clients dispatched first would be the only ones that ever train, and under label skew the global model
would see five clients' labels. So `random` is the default for all schedules: a comparison then gives every
schedule the same selection policy (uniform among the clients free now; FedAvg draws `per_round` uniformly
each round), and with `concurrency` null the draw has one candidate, the client that just finished, which is
the papers' loop. summary.json's `participation` block counts each client's jobs so a reader can check it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from fedlora.jobs import Job
from fedlora.schedules.base import Schedule, ServerView, Step, check_at_most_clients
from fedlora.seeding import numpy_rng


class ConcurrentOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    concurrency: int | None = Field(None, ge=1, description="clients training at once; null = all clients")
    next_client: Literal["same", "random"] = Field(
        "random",
        description="who gets new work: a seeded uniform draw among idle clients (fair), or the client that just "
        "finished ('same': starves the others when concurrency < clients.count)",
    )


class ConcurrentSchedule(Schedule):
    """Base of fedbuff, fedasync and fedfa: starts `concurrency` jobs and refills after every job end."""

    Options: ClassVar[type[BaseModel]] = ConcurrentOptions
    options: ConcurrentOptions
    #: the purpose string of this schedule's seeded client draws
    purpose: ClassVar[str] = "async"

    def __init__(self, options: ConcurrentOptions, num_clients: int, seed: int):
        super().__init__(options, num_clients, seed)
        self.picks = 0  # seeded draws made so far: the coordinate of the next one
        self.wake_pending: float | None = None

    @classmethod
    def check_options(cls, options: BaseModel, num_clients: int) -> None:
        check_at_most_clients("concurrency", getattr(options, "concurrency", None), num_clients)

    @property
    def concurrency(self) -> int:
        return self.options.concurrency or self.num_clients

    def fill(self, view: ServerView, prefer: int | None = None) -> Step:
        """Dispatch idle online clients until `concurrency` are busy; `prefer` first when next_client is same."""
        need = self.concurrency - len(view.busy_clients())
        if need <= 0:
            return Step()
        idle = view.idle_clients()
        chosen: list[int] = []
        if self.options.next_client == "same" and prefer is not None and prefer in idle:
            chosen.append(prefer)
        rest = [c for c in idle if c not in chosen]
        k = min(need - len(chosen), len(rest))
        if k > 0:
            rng = numpy_rng(self.seed, f"{self.purpose}-dispatch", self.picks)
            self.picks += 1
            chosen += sorted(int(c) for c in rng.choice(rest, size=k, replace=False))
        step = Step(dispatch=chosen)
        if len(chosen) < need:
            back = view.next_online_time()
            if back is not None and (self.wake_pending is None or back < self.wake_pending):
                self.wake_pending = back
                step.wake_at = back
        return step

    def start(self, view: ServerView) -> Step:
        return self.fill(view)

    def on_failure(self, job: Job, view: ServerView) -> Step:
        return self.fill(view, prefer=job.client)

    def on_timer(self, tag: int, view: ServerView) -> Step:
        if self.wake_pending is not None and view.now >= self.wake_pending:
            self.wake_pending = None
        return self.fill(view)

    def state_dict(self) -> dict[str, Any]:
        return {"picks": self.picks, "wake_pending": self.wake_pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.picks = state["picks"]
        self.wake_pending = state["wake_pending"]
