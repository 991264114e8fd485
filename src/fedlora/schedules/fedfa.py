"""FedFa: fully asynchronous training with a sliding window of buffered updates (Xu et al., 2024,
"FedFa: A Fully Asynchronous Training Paradigm for Federated Learning", IJCAI).

No client ever waits: `concurrency` clients train at all times, and every dispatch (to a client drawn
among the free ones, `next_client`) carries the newest global adapter. The server keeps the last K client
results; once K have arrived, every arrival sets the global adapter to the combination of the window,

    mode models:  x <- sum_j w_j x_j
    mode deltas:  x <- x + server_lr * sum_j w_j (x_j - x_start_j)

with w uniform (1/K) or by sample counts, each times a staleness weight s(tau_j) when `staleness` is set (in
models mode the weights are then renormalised to sum to 1, since the result must stay an average of models;
in deltas mode they are not, as in FedBuff, so stale deltas shrink the step). Before the K-th arrival the
global adapter does not change: one result alone is too noisy a model. Compared to FedBuff the window slides
by one instead of being emptied, so the model moves on every arrival while still averaging K results.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from fedlora.jobs import JobResult
from fedlora.lora.adapter import Adapter
from fedlora.schedules.base import SCHEDULES, ServerView, Step, sample_weights
from fedlora.schedules.concurrent import ConcurrentOptions, ConcurrentSchedule
from fedlora.schedules.staleness import StalenessOptions, staleness_weight


class FedFaOptions(ConcurrentOptions):
    window: int = Field(5, ge=1, description="K: the last K client results combined on every arrival")
    mode: Literal["models", "deltas"] = Field("models", description="combine the adapters, or step by their deltas")
    server_lr: float = Field(1.0, gt=0, description="deltas mode: server step size")
    weights: Literal["uniform", "samples"] = Field("uniform", description="window weights: 1/K or by sample count")
    staleness: StalenessOptions = Field(
        default_factory=StalenessOptions,
        description="s(tau) on each window result's weight; constant (the paper: no damping) by default",
    )


@SCHEDULES.register("fedfa")
class FedFa(ConcurrentSchedule):
    Options = FedFaOptions
    options: FedFaOptions
    purpose = "fedfa"

    def __init__(self, options: FedFaOptions, num_clients: int, seed: int):
        super().__init__(options, num_clients, seed)
        self.window: list[JobResult] = []
        self.arrivals = 0

    def on_arrival(self, result: JobResult, view: ServerView) -> Step:
        self.arrivals += 1
        self.window = [*self.window, result][-self.options.window :]
        step = self.fill(view, prefer=result.client)
        if self.arrivals < self.options.window:
            return step  # warm-up: the finished client restarts from the unchanged global adapter
        staleness = [view.version - r.job.start_version for r in self.window]
        damp = [staleness_weight(t, self.options.staleness) for t in staleness]
        weights = [w * d for w, d in zip(sample_weights(self.window, self.options.weights), damp, strict=True)]
        if self.options.mode == "models":
            if self.options.staleness.name != "constant":  # an average of models: the damped weights sum to 1
                total = sum(weights)
                weights = [w / total for w in weights]
            terms: list[tuple[float, Adapter]] = [(w, r.adapter) for w, r in zip(weights, self.window, strict=True)]
        else:
            lr = self.options.server_lr
            terms = [(1.0, view.global_adapter)]
            for w, r in zip(weights, self.window, strict=True):
                terms += [(lr * w, r.adapter), (-lr * w, r.job.start_adapter)]
        step.combine = terms
        step.info = {"clients": [r.client for r in self.window], "staleness": staleness, "weights": weights}
        return step

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "window": list(self.window), "arrivals": self.arrivals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.window = list(state["window"])
        self.arrivals = state["arrivals"]
