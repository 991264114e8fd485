"""A fake world for exact, fast schedule and server tests.

An adapter here is one number v: a single 1x1 LoRA layer with A = 1 and B = v, plus a one-element head
equal to v. Every schedule's combination has weights summing to 1 on A (means, mixes, x + sum w(x_i -
x_start_i)), so A stays 1 and the combined adapter is again a number: the weighted sum of the numbers.
Clients "train" by adding a known increment to the number they started from; with dyadic values every
sum is exact in float64, so tests compare with ==.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from fedlora.aggregators.fedit import FedIT
from fedlora.engine.cost import CostModel
from fedlora.engine.evaluation import EvalPlan, FunctionEvaluator
from fedlora.engine.faults import Faults
from fedlora.engine.observer import Callbacks
from fedlora.engine.server import ClientWorld, Server, StopRules
from fedlora.engine.transport.base import JobFailed, Transport
from fedlora.jobs import Job, JobResult
from fedlora.lora.adapter import Adapter
from fedlora.schedules.base import Schedule

BATCH = 4  # samples_trained = steps * BATCH


def num_adapter(value: float) -> Adapter:
    t = torch.float64
    return Adapter.from_factors(
        {"w": (torch.ones(1, 1, dtype=t), torch.full((1, 1), float(value), dtype=t))},
        alpha=1.0,
        extras={"head": torch.full((1,), float(value), dtype=t)},
    )


def num(adapter: Adapter) -> float:
    """The number an adapter stands for (checks that it still is one)."""
    f = adapter.layers["w"]
    v = float(f.B[0, 0])
    # exact with dyadic weights; with others (e.g. 1/3) A = 1 and head = B up to rounding
    assert abs(float(f.A[0, 0]) - 1.0) <= 1e-12, f"A drifted from 1: {f.A}"
    assert abs(float(adapter.extras["head"][0]) - v) <= 1e-12 * max(1.0, abs(v))
    return v


def default_increment(job: Job) -> float:
    return float(job.client + 1)


class FakeTransport(Transport):
    """Result = start number + increment(job). Results may be computed in any order (all pending at once).

    order: "fifo" computes each result when it is collected; "reverse" and "random" compute every pending
    job at the first collect, in reverse submission order or a shuffled one. Since a result depends only
    on its job, the server's events must not change.
    """

    def __init__(
        self,
        increment: Callable[[Job], float] = default_increment,
        order: str = "fifo",
        fail: Callable[[Job], str | None] | None = None,
        corrupt: Callable[[Job], bool] | None = None,
        seed: int = 0,
    ):
        self.increment = increment
        self.order = order
        self.fail = fail
        self.corrupt = corrupt
        self.pending: dict[int, Job] = {}
        self.done: dict[int, JobResult] = {}
        self.computed: list[int] = []  # job ids in the order results were computed
        self.submitted: list[int] = []
        self.values: dict[int, float] = {}  # job id -> the number its result carries
        self.samples: list[int] = []  # partition size per client (set by make_server)
        self.rng = np.random.default_rng(seed)

    def submit(self, job: Job) -> None:
        self.pending[job.job_id] = job
        self.submitted.append(job.job_id)

    def _compute(self, job: Job) -> JobResult:
        self.computed.append(job.job_id)
        value = num(job.start_adapter) + self.increment(job)
        self.values[job.job_id] = value
        adapter = num_adapter(value)
        if self.corrupt is not None and self.corrupt(job):
            adapter = num_adapter(float("nan"))
        return JobResult(job, adapter, num_samples=self.samples[job.client], samples_trained=job.steps * BATCH)

    def collect(self, job: Job) -> JobResult:
        if self.fail is not None and (reason := self.fail(job)) is not None:
            self.pending.pop(job.job_id, None)
            raise JobFailed(job, reason)
        if job.job_id not in self.done:
            ids = list(self.pending)
            if self.order == "reverse":
                ids = ids[::-1]
            elif self.order == "random":
                ids = [ids[i] for i in self.rng.permutation(len(ids))]
            elif self.order == "fifo":
                ids = [job.job_id]
            for i in ids:
                self.done[i] = self._compute(self.pending.pop(i))
        return self.done.pop(job.job_id)


class Evaluator:
    """accuracy = the global number; counts calls so tests can check that nothing is recomputed."""

    def __init__(self) -> None:
        self.calls = 0
        self.values: list[float] = []  # full precision (history rounds to 6 decimals)

    def __call__(self, adapter: Adapter) -> dict[str, float]:
        self.calls += 1
        self.values.append(num(adapter))
        return {"accuracy": self.values[-1]}


def make_server(
    schedule: Schedule,
    *,
    speeds: Sequence[float],
    steps: int | Sequence[int] = 1,
    samples: Sequence[int] | None = None,
    transport: FakeTransport | None = None,
    stop: StopRules | None = None,
    faults: Faults | None = None,
    initial: float = 0.0,
    events: list[dict[str, Any]] | None = None,
    server_cls: type[Server] = Server,
    **kwargs: Any,
) -> Server:
    """A server over the fake world: step_seconds = 1, infinite bandwidth, no latency, so a job of client c
    takes exactly steps[c] / speeds[c] virtual seconds."""
    n = len(speeds)
    steps_list = [steps] * n if isinstance(steps, int) else list(steps)
    samples_list = list(samples) if samples is not None else [8] * n
    transport = transport or FakeTransport()
    transport.samples = samples_list
    # the server's evaluator, plan and observer, from the keyword arguments the tests name
    evaluator = FunctionEvaluator(
        dev=kwargs.pop("evaluate", None) or Evaluator(),
        clients=kwargs.pop("evaluate_clients", None) or (lambda a: None),
    )
    plan = EvalPlan(
        metric=kwargs.pop("metric", "accuracy"),
        every_versions=kwargs.pop("eval_every_versions", 1),
        every_seconds=kwargs.pop("eval_every_seconds", None),
        time_budgets=tuple(kwargs.pop("time_budgets", ())),
    )
    observer = Callbacks(
        record=events.append if events is not None else None,
        evaluated=kwargs.pop("on_progress", None),
        new_version=kwargs.pop("on_version", None),
        checkpoint=kwargs.pop("save_checkpoint", None),
        checkpoint_every=kwargs.pop("checkpoint_every", None),
    )
    return server_cls(
        aggregator=FedIT(rank=1),
        schedule=schedule,
        transport=transport,
        cost=CostModel(step_seconds=1.0, speeds=np.asarray(speeds, float), bandwidth=np.full(n, np.inf), latency_s=0),
        world=ClientWorld(ranks=[1] * n, alphas=[1.0] * n, steps=steps_list, samples=samples_list),
        initial_adapter=num_adapter(initial),
        evaluator=evaluator,
        stop=stop or StopRules(versions=5),
        plan=plan,
        observer=observer,
        faults=faults,
        **kwargs,
    )


def of_kind(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def strip_real(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "real_s"} for e in events]


def curve(server: Server) -> list[tuple[int, float, float]]:
    """(version, virtual seconds, number) for every evaluation point."""
    return [(p["version"], p["virtual_s"], p["metrics"]["accuracy"]) for p in server.history]


class ScriptedAvailability:
    """Offline intervals [start, end) per client, written by hand; the interface of `Availability`."""

    def __init__(self, offline: dict[int, list[tuple[float, float]]]):
        self.offline = offline

    def _containing(self, client: int, t: float) -> tuple[float, float] | None:
        return next(((a, b) for a, b in self.offline.get(client, []) if a <= t < b), None)

    def online(self, client: int, t: float) -> bool:
        return self._containing(client, t) is None

    def next_offline(self, client: int, t: float) -> float:
        if not self.online(client, t):
            return t
        return min((a for a, _ in self.offline.get(client, []) if a > t), default=float("inf"))

    def next_online(self, client: int, t: float) -> float:
        span = self._containing(client, t)
        return t if span is None else span[1]

    def offline_seconds(self, client: int, t0: float, t1: float) -> float:
        return sum(max(0.0, min(b, t1) - max(a, t0)) for a, b in self.offline.get(client, []))
