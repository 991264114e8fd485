"""Example schedule in one file: apply every client's delta on arrival, damped by its staleness.

    x <- x + server_lr / (1 + tau) * (x_i - x_start_i),    tau = version now - version client i started from

No client waits: each arrival updates the global adapter and every idle client gets new work at once. A
schedule never touches tensors; it answers each event with a `Step` whose `combine` lists (weight, adapter)
terms, here (1, x), (+w, x_i), (-w, x_start_i), and the aggregator decides what that sum means.

To use it: copy this file to src/fedlora/schedules/ and add it to the import line of that package's
__init__.py (then `schedule: {name: async_delta}` works in any config), or import it in your own script
before loading a config. tests/test_docs_reference.py runs it on the tiny model.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fedlora.jobs import Job, JobResult
from fedlora.schedules.base import SCHEDULES, Schedule, ServerView, Step


class AsyncDeltaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server_lr: float = Field(1.0, gt=0, description="server step size on a fresh client delta")


@SCHEDULES.register("async_delta")
class AsyncDelta(Schedule):
    """Fully asynchronous: every arrival steps the global adapter by the client's staleness-damped delta."""

    Options = AsyncDeltaOptions
    options: AsyncDeltaOptions

    def __init__(self, options: AsyncDeltaOptions, num_clients: int, seed: int):
        super().__init__(options, num_clients, seed)
        self.applied = 0  # schedule state goes into checkpoints through state_dict

    def start(self, view: ServerView) -> Step:
        return Step(dispatch=view.idle_clients())

    def on_arrival(self, result: JobResult, view: ServerView) -> Step:
        tau = view.version - result.job.start_version
        w = self.options.server_lr / (1 + tau)
        self.applied += 1
        return Step(
            combine=[(1.0, view.global_adapter), (w, result.adapter), (-w, result.job.start_adapter)],
            dispatch=view.idle_clients(),  # includes the client that just finished (when it is online)
            info={"staleness": tau, "weight": w},
        )

    def on_failure(self, job: Job, view: ServerView) -> Step:
        return Step(dispatch=view.idle_clients())

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self.applied}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.applied = state["applied"]
