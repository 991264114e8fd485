"""The transport interface: run a dispatched job somewhere and hand back its result.

The server processes results in virtual-time order whatever order a transport finishes them in, so a
parallel transport gives the same numbers as a serial one. `submit` may start work; `collect` blocks
until that job's result is available.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from fedlora.jobs import Job, JobResult


class Transport(ABC):
    @abstractmethod
    def submit(self, job: Job) -> None: ...

    @abstractmethod
    def collect(self, job: Job) -> JobResult:
        """The result of a submitted job; raises `JobFailed` if the client crashed or vanished."""

    def drive(self, run: Callable[[], None]) -> None:
        """Run the server loop `run` where this transport reaches its clients.

        In-process: just call it. Flower: inside a ServerApp, once the Grid to the nodes exists.
        """
        run()

    def close(self) -> None:
        return None


class JobFailed(RuntimeError):
    def __init__(self, job: Job, reason: str):
        super().__init__(f"job {job.job_id} on client {job.client} failed: {reason}")
        self.job = job
        self.reason = reason
