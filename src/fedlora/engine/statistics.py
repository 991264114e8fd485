"""A run's statistics, kept apart from the loop that produces them: counters, time shares, the summary.

`Counters` is what the server counts as events happen (and checkpoints); `summarize` turns a finished (or
interrupted) server into summary.json's numbers: the curve's final and best points, the totals, how client
time was spent, the metrics at each time budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fedlora.engine.server import Server


@dataclass
class Counters:
    jobs_dispatched: int = 0
    jobs_arrived: int = 0
    samples_trained: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    staleness: list[int] = field(default_factory=list)
    busy_seconds: float = 0.0  # summed over clients: virtual seconds with a job (ended jobs only)
    # accepted results per client (index = client id), grown on demand: who actually shaped the model
    arrived_by_client: list[int] = field(default_factory=list)
    rejected_in_a_row: int = 0  # replies rejected since the last accepted one (validation.max_rejections_in_a_row)
    # sums and counts of the numeric metrics that accepted jobs reported (train_loss, local_*_before/after)
    job_metric_sums: dict[str, float] = field(default_factory=dict)
    job_metric_counts: dict[str, int] = field(default_factory=dict)

    def add_job_metrics(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            if math.isfinite(v):
                self.job_metric_sums[k] = self.job_metric_sums.get(k, 0.0) + float(v)
                self.job_metric_counts[k] = self.job_metric_counts.get(k, 0) + 1

    def count_arrival(self, client: int) -> None:
        if client >= len(self.arrived_by_client):
            self.arrived_by_client += [0] * (client + 1 - len(self.arrived_by_client))
        self.arrived_by_client[client] += 1
        self.rejected_in_a_row = 0

    def job_metric_means(self) -> dict[str, float]:
        return {k: self.job_metric_sums[k] / self.job_metric_counts[k] for k in sorted(self.job_metric_sums)}

    def state_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def time_shares(server: Server) -> dict[str, float]:
    """Shares of client time (clients x run time): busy with a job, offline, and idle (online, no job).

    The idle share is what asynchronous schedules remove: in a synchronous round every client that
    finished early waits for the slowest.
    """
    now = server.clock.now
    count = server.world.count
    total = count * now
    if total <= 0:
        return {"busy_fraction": 0.0, "offline_fraction": 0.0, "idle_fraction": 0.0}
    busy = server.counters.busy_seconds + sum(now - j.dispatch_time for j in server.in_flight.values())
    offline = 0.0
    faults = server.faults
    if faults is not None and faults.availability is not None:
        # jobs fail when their client drops, so offline and busy time never overlap
        offline = sum(faults.availability.offline_seconds(c, 0.0, now) for c in range(count))
    return {
        "busy_fraction": round(busy / total, 6),
        "offline_fraction": round(offline / total, 6),
        "idle_fraction": round(max(0.0, 1.0 - (busy + offline) / total), 6),
    }


def at_time_budgets(server: Server) -> dict[str, dict[str, Any] | None]:
    """The metrics of the global model at each virtual time budget; None for budgets the run did not reach."""
    out: dict[str, dict[str, Any] | None] = {}
    for budget in server.time_budgets:
        before = [p for p in server.history if p["virtual_s"] <= budget + 1e-9]
        reached = server.clock.now >= budget - 1e-9
        out[f"{budget:g}"] = (
            {"version": before[-1]["version"], "metrics": before[-1]["metrics"]} if reached and before else None
        )
    return out


def participation(dispatched: list[int], arrived: list[int]) -> dict[str, Any]:
    """Per-client job counts, so a reader can check that a schedule did not starve clients.

    `dispatched` counts every job sent to a client; `arrived` the results that passed validation (what the
    server could combine). `distinct` is the number of clients with at least one accepted result.
    """
    arrived = arrived + [0] * (len(dispatched) - len(arrived))
    return {
        "dispatched": list(dispatched),
        "arrived": arrived,
        "distinct": sum(1 for a in arrived if a > 0),
        "min_arrived": min(arrived) if arrived else 0,
        "max_arrived": max(arrived) if arrived else 0,
    }


def summarize(server: Server) -> dict[str, Any]:
    """summary.json's numbers (without what the caller adds: run directory, step seconds, local blocks)."""
    evals = server.history
    metric = server.plan.metric
    best = max(evals, key=lambda p: (p["metrics"].get(metric, float("-inf")), -p["version"])) if evals else None
    c = server.counters
    st = c.staleness
    return {
        "final": evals[-1] if evals else None,
        "best": best,
        "metric": metric,
        "time_to_target": server.time_to_target,
        "stopped_by": server.stopped_by,
        "totals": {
            "versions": server.version,
            "virtual_seconds": round(server.clock.now, 6),
            "jobs_dispatched": c.jobs_dispatched,
            "jobs_arrived": c.jobs_arrived,
            "samples_trained": c.samples_trained,
            "bytes_up": c.bytes_up,
            "bytes_down": c.bytes_down,
            "dropped": dict(sorted(c.dropped.items())),
            "rejected": dict(sorted(c.rejected.items())),
            "failed": dict(sorted(c.failed.items())),
            "staleness_mean": float(np.mean(st)) if st else 0.0,
            "staleness_max": int(max(st)) if st else 0,
            **time_shares(server),
        },
        "participation": participation(server.client_jobs, c.arrived_by_client),
        "job_metrics": {k: round(v, 6) for k, v in c.job_metric_means().items()},
        "at_time": at_time_budgets(server),
        "history": evals,
        "timing": {"real_seconds": round(server.real_seconds(), 3)},
    }
