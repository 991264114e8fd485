"""FedAsync on the fake world. Two clients with job durations 6 and 3 (speeds 1 and 2, 6 steps); client c
adds c + 1; the finished client restarts at once. Hand-worked timeline:

    t=3   client 1 (from v0)  tau 0  -> v1
    t=6   client 0 (from v0)  tau 1  -> v2      (dispatched earlier, so first at the tie)
    t=6   client 1 (from v1)  tau 1  -> v3
    t=9   client 1 (from v3)  tau 0  -> v4
    t=12  client 0 (from v2)  tau 2  -> v5
    t=12  client 1 (from v4)  tau 1  -> v6
"""

import pytest

from fedlora.engine.server import StopRules
from fedlora.schedules.fedasync import FedAsync, FedAsyncOptions
from fedlora.schedules.staleness import StalenessOptions
from tests.engine.fakes import curve, make_server, of_kind


def fedasync(n: int = 2, **options) -> FedAsync:
    return FedAsync(FedAsyncOptions(**options), num_clients=n, seed=0)


def run(schedule, versions=6):
    events = []
    server = make_server(schedule, speeds=[1, 2], steps=6, stop=StopRules(versions=versions), events=events)
    server.run()
    return server, events


def test_staleness_follows_the_hand_worked_timeline():
    server, events = run(fedasync(alpha=1.0, staleness=StalenessOptions(name="constant")))
    arrivals = of_kind(events, "arrival")
    assert [(a["virtual_s"], a["client"], a["staleness"]) for a in arrivals] == [
        (3.0, 1, 0),
        (6.0, 0, 1),
        (6.0, 1, 1),
        (9.0, 1, 0),
        (12.0, 0, 2),
        (12.0, 1, 1),
    ]
    assert server.counters.staleness == [0, 1, 1, 0, 2, 1]
    summary = server.summary()["totals"]
    assert (summary["staleness_mean"], summary["staleness_max"]) == (5 / 6, 2)


def test_with_a_equal_1_and_constant_s_the_global_adapter_is_the_last_arrival():
    server, events = run(fedasync(alpha=1.0, staleness=StalenessOptions(name="constant")))
    # each arrival's number: its start number + (client + 1)
    assert [v for _, _, v in curve(server)] == [0, 2, 1, 4, 6, 2, 8]
    arrived = [server.transport.values[a["job"]] for a in of_kind(events, "arrival")]
    assert [v for _, _, v in curve(server)][1:] == arrived
    assert all(e["terms"] == 1 for e in of_kind(events, "aggregation"))  # (1 - a) x is left out when a = 1


def test_every_arrival_mixes_with_a_times_its_own_staleness_weight():
    server, events = run(fedasync(alpha=0.5, staleness=StalenessOptions(name="polynomial", a=1.0)), versions=3)
    mixes = [e["mix"] for e in of_kind(events, "aggregation")]
    assert mixes == [0.5, 0.25, 0.25]  # 0.5 / (1 + tau) for tau 0, 1, 1: never multiplied across updates
    # x1 = 0.5*0 + 0.5*2; x2 = 0.75*1 + 0.25*1; x3 = 0.75*1 + 0.25*(1 + 2)
    assert [v for _, _, v in curve(server)] == [0, 1, 1, 1.5]


def test_stale_results_beyond_max_staleness_are_dropped_and_counted():
    server, events = run(fedasync(alpha=1.0, staleness=StalenessOptions(name="constant"), max_staleness=1))
    drops = of_kind(events, "drop")
    assert [(d["virtual_s"], d["client"], d["staleness"]) for d in drops] == [(12.0, 0, 2)]
    assert server.summary()["totals"]["dropped"] == {"stale": 1}
    assert all(max(e["staleness"]) <= 1 for e in of_kind(events, "aggregation"))


@pytest.mark.parametrize("next_client", ["same", "random"])
def test_a_finished_client_is_replaced_at_once(next_client):
    events = []
    server = make_server(
        fedasync(4, concurrency=2, next_client=next_client),
        speeds=[1, 2, 3, 4],
        stop=StopRules(versions=8),
        events=events,
    )
    server.run()
    arrivals = of_kind(events, "arrival")
    for a in arrivals[:-1]:
        # the refill is dispatched at the arrival's own virtual time
        assert any(d["virtual_s"] == a["virtual_s"] for d in of_kind(events, "dispatch"))
    clients = {d["client"] for d in of_kind(events, "dispatch")}
    assert clients == (
        {0, 1, 2, 3} if next_client == "random" else {d["client"] for d in of_kind(events, "dispatch")[:2]}
    )
