"""Client selection is fair by default: with 5 of 20 clients training at once, no schedule starves clients.

The confound this guards against: FedFa's and FedAsync's worker loop (`next_client: same`) re-dispatches the
client that just finished, so with `concurrency` below the client count only the first clients dispatched
ever train. Every schedule now draws uniformly among idle clients unless told otherwise, and summary.json's
`participation` block counts each client's jobs.
"""

import pytest

from fedlora.engine.server import StopRules
from fedlora.engine.statistics import participation, summarize
from fedlora.schedules.fedasync import FedAsync, FedAsyncOptions
from fedlora.schedules.fedbuff import FedBuff, FedBuffOptions
from fedlora.schedules.fedfa import FedFa, FedFaOptions
from tests.engine.fakes import make_server, of_kind

N = 20
SPEEDS = [1.0 + (c % 4) * 0.5 for c in range(N)]

SCHEDULES = {
    "fedfa": lambda **o: FedFa(FedFaOptions(concurrency=5, window=5, **o), N, seed=1),
    "fedasync": lambda **o: FedAsync(FedAsyncOptions(concurrency=5, **o), N, seed=1),
    "fedbuff": lambda **o: FedBuff(FedBuffOptions(concurrency=5, buffer_size=5, **o), N, seed=1),
}


def run(schedule) -> tuple[list[dict], dict]:
    events: list[dict] = []
    server = make_server(schedule, speeds=SPEEDS, steps=2, stop=StopRules(virtual_seconds=60.0), events=events)
    server.run()
    return events, summarize(server)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_by_default_every_client_trains_when_five_of_twenty_run_at_once(name):
    events, summary = run(SCHEDULES[name]())
    dispatched = {e["client"] for e in of_kind(events, "dispatch")}
    assert dispatched == set(range(N))
    part = summary["participation"]
    assert part["distinct"] == N and part["min_arrived"] >= 1
    # the counts agree with the event log
    for c in range(N):
        assert part["dispatched"][c] == sum(1 for e in of_kind(events, "dispatch") if e["client"] == c)
        assert part["arrived"][c] == sum(1 for e in of_kind(events, "arrival") if e["client"] == c)
    assert sum(part["arrived"]) == summary["totals"]["jobs_arrived"]


@pytest.mark.parametrize("name", ["fedfa", "fedasync"])
def test_the_papers_worker_loop_is_still_available_and_starves_clients_as_documented(name):
    events, summary = run(SCHEDULES[name](next_client="same"))
    assert len({e["client"] for e in of_kind(events, "dispatch")}) == 5
    assert summary["participation"]["distinct"] == 5


def test_participation_pads_clients_that_never_returned():
    part = participation([3, 0, 2], [3])
    assert part == {"dispatched": [3, 0, 2], "arrived": [3, 0, 0], "distinct": 1, "min_arrived": 0, "max_arrived": 3}
