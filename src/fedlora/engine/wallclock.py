"""The server loop on the real clock, for deployments: results are processed as they really arrive.

The virtual server pops arrivals at the times the cost model predicts; a deployment has real clients
whose results arrive when they arrive. This server keeps everything else (schedules, aggregators,
validation, evaluation ticks, stop rules, checkpoints) and changes only where time comes from: the
clock reads real seconds since the run started, a job's estimated arrival is taken off the clock, and
each step handles whichever comes first, a due timer/tick or a result the transport has received. An
asynchronous schedule therefore updates on real arrival. Events still record `virtual_s`, which here
means real seconds since the start.

The transport must also offer `poll()` (job ids whose reply has arrived, earliest first) and `overdue()`
(job ids past their deadline); `collect` of an overdue job raises `JobFailed(job, "timeout")`.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from fedlora.engine.server import Server
from fedlora.jobs import Job


class ArrivalTransport(Protocol):
    def poll(self) -> list[int]: ...

    def overdue(self) -> list[int]: ...


class WallClockServer(Server):
    poll_s: float = 0.02

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for method in ("poll", "overdue"):
            if not callable(getattr(self.transport, method, None)):
                raise TypeError(f"the wall-clock server needs a transport with {method}() (e.g. Flower's)")

    def wall_now(self) -> float:
        return self.real_seconds()

    def dispatch(self, client: int, tag: int) -> Job:
        job = super().dispatch(client, tag)
        self.clock.discard("arrival", job)  # it arrives when it arrives
        return job

    def step(self) -> bool:
        if self.stopped_by is not None:
            return False
        if not self._work_pending():
            self.stopped_by = "idle"
            return False
        while True:
            now = self.wall_now()
            limit = self.stop_rules.virtual_seconds
            if limit is not None and now > limit:
                self.clock.now = max(self.clock.now, float(limit))
                self.stopped_by = "virtual_seconds"
                return False
            nxt = self.clock.peek()
            if nxt is not None and nxt.time <= now:
                return super().step()  # a due timer, tick or (simulated) failure, in clock order
            ready = [j for j in self.transport.poll() if j in self.in_flight]
            ready += [j for j in self.transport.overdue() if j in self.in_flight and j not in ready]
            if ready:
                self.clock.now = max(self.clock.now, now)
                self._on_arrival(self.in_flight[ready[0]])
                if self.checkpoint_due():
                    self.checkpoint()
                return self.stopped_by is None
            time.sleep(self.poll_s)
