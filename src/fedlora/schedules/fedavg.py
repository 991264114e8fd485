"""Synchronous FedAvg (McMahan et al., 2017): sample clients, wait for all, average.

Every round waits for its slowest selected client, which is what the asynchronous schedules remove.
Over-selection (Bonawitz et al., 2019, "Towards Federated Learning at Scale") dispatches
ceil(per_round * (1 + over_select)) clients and aggregates as soon as `per_round` have arrived; a round
deadline aggregates whatever arrived by then. Results that come back after their round closed are dropped
and counted, never silently used. A job that fails (crash, client offline) or is rejected shrinks what the
round waits for; a round whose jobs all failed closes without an update. Clients are sampled among those
idle and online at the start of a round; if none is, the round starts when the first one comes back.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fedlora.jobs import Job, JobResult
from fedlora.schedules.base import SCHEDULES, Schedule, ServerView, Step, check_at_most_clients, sample_weights
from fedlora.seeding import numpy_rng


class FedAvgOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_round: int | None = Field(None, ge=1, description="clients per round; null = all clients")
    over_select: float = Field(0.0, ge=0.0, description="extra share of clients dispatched per round")
    deadline_s: float | None = Field(None, gt=0, description="virtual seconds a round waits at most")
    weights: Literal["samples", "uniform"] = "samples"


@SCHEDULES.register("fedavg")
class FedAvg(Schedule):
    Options = FedAvgOptions
    options: FedAvgOptions

    def __init__(self, options: FedAvgOptions, num_clients: int, seed: int):
        super().__init__(options, num_clients, seed)
        self.round = 0
        self.buffer: list[JobResult] = []
        self.expected = 0  # results that close the round
        self.pending = 0  # jobs of this round still out
        self.waiting = False  # the round could not start: no client was idle and online

    @classmethod
    def check_options(cls, options: BaseModel, num_clients: int) -> None:
        check_at_most_clients("per_round", getattr(options, "per_round", None), num_clients)

    def _begin_round(self, view: ServerView) -> Step:
        per_round = min(self.options.per_round or self.num_clients, self.num_clients)
        want = min(self.num_clients, math.ceil(per_round * (1 + self.options.over_select)))
        idle = view.idle_clients()
        self.buffer = []
        if not idle:
            # timers with negative tags retry the start; deadlines carry the (non-negative) round number
            self.waiting, self.expected, self.pending = True, 0, 0
            return Step(wake_at=view.next_online_time(), timer_tag=-1 - self.round)
        self.waiting = False
        rng = numpy_rng(self.seed, "fedavg-sample", self.round)
        chosen = sorted(int(c) for c in rng.choice(idle, size=min(want, len(idle)), replace=False))
        self.expected = min(per_round, len(chosen))
        self.pending = len(chosen)
        deadline = view.now + self.options.deadline_s if self.options.deadline_s else None
        return Step(dispatch=chosen, tag=self.round, wake_at=deadline, timer_tag=self.round)

    def start(self, view: ServerView) -> Step:
        return self._begin_round(view)

    def _close_round(self, view: ServerView, reason: str) -> Step:
        results = sorted(self.buffer, key=lambda r: r.client)
        weights = sample_weights(results, self.options.weights) if results else []
        terms = [(w, r.adapter) for w, r in zip(weights, results, strict=True)]
        info = {"round": self.round, "clients": [r.client for r in results], "closed_by": reason}
        self.round += 1
        nxt = self._begin_round(view)
        return Step(
            combine=terms or None,
            dispatch=nxt.dispatch,
            tag=nxt.tag,
            wake_at=nxt.wake_at,
            timer_tag=nxt.timer_tag,
            info=info,
        )

    def _round_done(self) -> bool:
        return len(self.buffer) >= self.expected or self.pending == 0

    def on_arrival(self, result: JobResult, view: ServerView) -> Step:
        if result.job.tag != self.round or self.waiting:
            # a straggler of a closed round; it may free the client a waiting round needs
            step = self._begin_round(view) if self.waiting else Step()
            step.drop = "late"
            return step
        self.buffer.append(result)
        self.pending -= 1
        if self._round_done():
            return self._close_round(view, "all" if not self.options.over_select else "first_k")
        return Step()

    def on_failure(self, job: Job, view: ServerView) -> Step:
        if self.waiting:
            return self._begin_round(view)
        if job.tag != self.round:
            return Step()
        self.pending -= 1
        if self._round_done():
            return self._close_round(view, "failures")
        return Step()

    def on_timer(self, tag: int, view: ServerView) -> Step:
        if tag < 0:
            return self._begin_round(view) if self.waiting and tag == -1 - self.round else Step()
        if tag != self.round or self.waiting:
            return Step()
        return self._close_round(view, "deadline")

    def state_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "buffer": list(self.buffer),
            "expected": self.expected,
            "pending": self.pending,
            "waiting": self.waiting,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round = state["round"]
        self.buffer = list(state["buffer"])
        self.expected = state["expected"]
        self.pending = state.get("pending", self.expected - len(self.buffer))
        self.waiting = state.get("waiting", False)
