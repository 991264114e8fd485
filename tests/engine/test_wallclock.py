"""The real-clock server: results are processed in the order they really arrive, late jobs time out."""

from __future__ import annotations

import time

import pytest

from fedlora.engine.server import StopRules
from fedlora.engine.transport.base import JobFailed
from fedlora.engine.wallclock import WallClockServer
from fedlora.jobs import Job, JobResult
from fedlora.schedules.fedasync import FedAsync, FedAsyncOptions
from tests.engine.fakes import BATCH, FakeTransport, make_server, num, num_adapter, of_kind


class TimedTransport(FakeTransport):
    """A job's result is ready `delay(job)` real seconds after submission; None never arrives."""

    def __init__(self, delay, timeout_s: float = 10.0):
        super().__init__()
        self.delay = delay
        self.timeout_s = timeout_s
        self.sent: dict[int, float] = {}

    def submit(self, job: Job) -> None:
        super().submit(job)
        self.sent[job.job_id] = time.monotonic()

    def _due(self, job_id: int) -> float | None:
        d = self.delay(self.pending[job_id])
        return None if d is None else self.sent[job_id] + d

    def poll(self) -> list[int]:
        now = time.monotonic()
        ready = [(due, j) for j in self.pending if (due := self._due(j)) is not None and due <= now]
        return [j for _, j in sorted(ready)]

    def overdue(self) -> list[int]:
        now = time.monotonic()
        return [j for j in self.pending if self._due(j) is None and now - self.sent[j] > self.timeout_s]

    def collect(self, job: Job) -> JobResult:
        if self._due(job.job_id) is None:
            self.pending.pop(job.job_id)
            raise JobFailed(job, "timeout")
        self.pending.pop(job.job_id)
        adapter = num_adapter(num(job.start_adapter) + job.client + 1)
        return JobResult(job, adapter, num_samples=8, samples_trained=job.steps * BATCH)


def wall_server(transport, events, stop, speeds=(1.0, 1.0, 1.0)):
    schedule = FedAsync(FedAsyncOptions(), len(speeds), seed=0)
    return make_server(
        schedule, speeds=list(speeds), transport=transport, events=events, stop=stop, server_cls=WallClockServer
    )


def test_results_are_processed_in_real_arrival_order_not_cost_model_order():
    # the cost model says all clients are equally fast; in reality client 0 is slow
    delays = {0: 0.25, 1: 0.05, 2: 0.1}
    events = []
    server = wall_server(TimedTransport(lambda job: delays[job.client]), events, StopRules(versions=12))
    server.run()
    arrivals = of_kind(events, "arrival")
    first_seen = list(dict.fromkeys(e["client"] for e in arrivals))
    assert first_seen == [1, 2, 0]  # real speed order; the cost model (equal speeds) would say 0, 1, 2
    times = [e["virtual_s"] for e in events]
    assert times == sorted(times)  # the clock is real time and never runs backwards
    dispatch_at = {e["job"]: e["virtual_s"] for e in of_kind(events, "dispatch")}
    assert all(e["virtual_s"] >= dispatch_at[e["job"]] + delays[e["client"]] - 1e-3 for e in arrivals)
    assert server.version == 12 and server.stopped_by == "versions"


def test_a_job_that_never_replies_times_out_and_the_run_goes_on():
    events = []
    transport = TimedTransport(lambda job: None if job.job_id == 0 else 0.02, timeout_s=0.1)
    server = wall_server(transport, events, StopRules(versions=15), speeds=(1.0, 1.0))
    server.run()
    assert server.summary()["totals"]["failed"] == {"timeout": 1}
    assert server.version == 15
    (failure,) = of_kind(events, "failure")
    assert failure["job"] == 0 and failure["virtual_s"] >= 0.1


def test_a_transport_without_arrival_polling_is_refused():
    with pytest.raises(TypeError, match="poll"):
        make_server(FedAsync(FedAsyncOptions(), 1, seed=0), speeds=[1.0], server_cls=WallClockServer)


def test_a_killed_wall_clock_server_resumes_and_resends_its_in_flight_jobs_to_a_new_transport():
    """A deployment's server restarts with a new SuperLink: nothing of the old transport survives."""
    delays = {0: 0.15, 1: 0.03, 2: 0.06}
    killed = wall_server(TimedTransport(lambda job: delays[job.client]), [], StopRules(versions=10))
    killed.start()
    while not (killed.version >= 4 and killed.in_flight):
        assert killed.step()
    state = killed.state_dict()
    in_flight = {int(j) for j in state["in_flight"]}
    assert in_flight and state["real_elapsed"] > 0
    del killed

    events = []
    fresh = TimedTransport(lambda job: delays[job.client])
    resumed = wall_server(fresh, events, StopRules(versions=10))
    resumed.load_state_dict(state)
    assert set(fresh.sent) == in_flight  # every in-flight job was sent again
    resumed.run()
    assert resumed.version == 10 and resumed.stopped_by == "versions"
    arrived = [e["job"] for e in of_kind(events, "arrival")]
    assert in_flight <= set(arrived) and len(arrived) == len(set(arrived))  # each once, none lost
    assert all(e["virtual_s"] >= state["real_elapsed"] for e in events)  # the clock goes on from the kill
    assert resumed.summary()["totals"]["failed"] == {}
