"""FedBuff: semi-asynchronous training with a buffer of K arrivals (Nguyen et al., 2022, "Federated
Learning with Buffered Asynchronous Aggregation", AISTATS).

`concurrency` clients train at all times. Arrivals are buffered; after every K of them the server steps

    x <- x + server_lr * sum_i w_i (x_i - x_start_i),    w_i = s(tau_i) * base_i,

with base_i = 1/K (uniform) or n_i / sum n (samples), s a staleness weight and x_start_i the adapter
client i started from. As terms for the aggregator: (1, x), (+lr w_i, x_i), (-lr w_i, x_start_i).
Results older than `max_staleness` versions are dropped and counted, never silently used.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from fedlora.jobs import JobResult
from fedlora.lora.adapter import Adapter
from fedlora.schedules.base import SCHEDULES, ServerView, Step, sample_weights
from fedlora.schedules.concurrent import ConcurrentOptions, ConcurrentSchedule
from fedlora.schedules.staleness import StalenessOptions, staleness_weight


class FedBuffOptions(ConcurrentOptions):
    buffer_size: int = Field(10, ge=1, description="K: arrivals per server update")
    server_lr: float = Field(1.0, gt=0, description="server step size on the buffered mean delta")
    staleness: StalenessOptions = Field(
        default_factory=lambda: StalenessOptions(name="polynomial", a=0.5),
        description="s(tau) that damps stale deltas; the paper's 1/sqrt(1+tau) by default",
    )
    max_staleness: int | None = Field(None, ge=0, description="drop (and count) results staler than this")
    weights: Literal["uniform", "samples"] = Field("uniform", description="base weights: 1/K or by sample count")


@SCHEDULES.register("fedbuff")
class FedBuff(ConcurrentSchedule):
    Options = FedBuffOptions
    options: FedBuffOptions
    purpose = "fedbuff"

    def __init__(self, options: FedBuffOptions, num_clients: int, seed: int):
        super().__init__(options, num_clients, seed)
        self.buffer: list[JobResult] = []

    def on_arrival(self, result: JobResult, view: ServerView) -> Step:
        tau = view.version - result.job.start_version
        if self.options.max_staleness is not None and tau > self.options.max_staleness:
            step = self.fill(view, prefer=result.client)
            step.drop = "stale"
            return step
        self.buffer.append(result)
        if len(self.buffer) < self.options.buffer_size:
            return self.fill(view, prefer=result.client)
        # the version only changes at a flush, so every buffered result has the same tau now as at arrival
        taus = [view.version - r.job.start_version for r in self.buffer]
        base = sample_weights(self.buffer, self.options.weights)
        lr = self.options.server_lr
        weights = [b * staleness_weight(t, self.options.staleness) for b, t in zip(base, taus, strict=True)]
        terms: list[tuple[float, Adapter]] = [(1.0, view.global_adapter)]
        for w, r in zip(weights, self.buffer, strict=True):
            terms += [(lr * w, r.adapter), (-lr * w, r.job.start_adapter)]
        info = {"clients": [r.client for r in self.buffer], "staleness": taus, "weights": weights}
        self.buffer = []
        # the server combines before it dispatches, so the refilled clients start from the new global adapter
        step = self.fill(view, prefer=result.client)
        step.combine, step.info = terms, info
        return step

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "buffer": list(self.buffer)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer = list(state["buffer"])
