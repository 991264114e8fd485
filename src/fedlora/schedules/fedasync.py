"""FedAsync: fully asynchronous mixing on every arrival (Xie et al., 2019, "Asynchronous Federated
Optimization", arXiv:1903.03934).

On every arrival the server mixes the client's adapter into the global one,

    x <- (1 - m) x + m x_new,    m = a * s(tau),

with a fixed mixing weight a and a staleness weight s. m is computed afresh for each update from that
update's own staleness; it is never multiplied across updates. With a = 1 and s = 1 the global adapter
is simply the last arrival. Results older than `max_staleness` versions are dropped and counted.
"""

from __future__ import annotations

from pydantic import Field

from fedlora.jobs import JobResult
from fedlora.lora.adapter import Adapter
from fedlora.schedules.base import SCHEDULES, ServerView, Step
from fedlora.schedules.concurrent import ConcurrentOptions, ConcurrentSchedule
from fedlora.schedules.staleness import StalenessOptions, staleness_weight


class FedAsyncOptions(ConcurrentOptions):
    alpha: float = Field(0.6, gt=0, le=1, description="mixing weight a of a fresh result (the paper's alpha)")
    staleness: StalenessOptions = Field(
        default_factory=lambda: StalenessOptions(name="polynomial", a=0.5),
        description="s(tau) that damps stale results",
    )
    max_staleness: int | None = Field(None, ge=0, description="drop (and count) results staler than this")


@SCHEDULES.register("fedasync")
class FedAsync(ConcurrentSchedule):
    Options = FedAsyncOptions
    options: FedAsyncOptions
    purpose = "fedasync"

    def on_arrival(self, result: JobResult, view: ServerView) -> Step:
        tau = view.version - result.job.start_version
        step = self.fill(view, prefer=result.client)
        if self.options.max_staleness is not None and tau > self.options.max_staleness:
            step.drop = "stale"
            return step
        m = self.options.alpha * staleness_weight(tau, self.options.staleness)
        terms: list[tuple[float, Adapter]] = [(m, result.adapter)]
        if m < 1.0:
            terms.insert(0, (1.0 - m, view.global_adapter))
        step.combine, step.info = terms, {"clients": [result.client], "staleness": [tau], "mix": m}
        return step
