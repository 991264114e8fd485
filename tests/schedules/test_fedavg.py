"""Synchronous FedAvg on the fake world: exact numbers on hand-worked timelines.

Speeds [1, 2, 4, 0.5] with 4 steps give job durations 4, 2, 1, 8; client c adds c + 1 to the number it
starts from.
"""

import pytest

from fedlora.config import validate_config
from fedlora.engine.server import StopRules
from fedlora.errors import ConfigError
from fedlora.schedules.fedavg import FedAvg, FedAvgOptions
from fedlora.seeding import numpy_rng
from tests.engine.fakes import FakeTransport, curve, make_server, of_kind

SPEEDS = [1.0, 2.0, 4.0, 0.5]


def fedavg(n: int = 4, **options) -> FedAvg:
    return FedAvg(FedAvgOptions(**options), num_clients=n, seed=0)


def test_every_round_waits_for_its_slowest_client():
    events = []
    server = make_server(fedavg(), speeds=SPEEDS, steps=4, stop=StopRules(versions=2), events=events)
    server.run()
    assert [e["virtual_s"] for e in of_kind(events, "aggregation")] == [8.0, 16.0]
    # nothing is dispatched once the last round closes: the stop rule is checked first
    assert [e["virtual_s"] for e in of_kind(events, "dispatch")] == [0.0] * 4 + [8.0] * 4
    # round 0: mean of 1, 2, 3, 4; round 1 starts every client from 2.5
    assert curve(server) == [(0, 0.0, 0.0), (1, 8.0, 2.5), (2, 16.0, 5.0)]
    # every client but the slowest waits: busy (4 + 2 + 1 + 8) of 16 seconds per round
    assert server.summary()["totals"]["busy_fraction"] == 30 / 64
    assert server.summary()["totals"]["idle_fraction"] == 34 / 64
    assert server.summary()["totals"]["staleness_max"] == 0


def test_sample_weights_weight_each_client_by_its_partition_size():
    server = make_server(fedavg(2), speeds=[1, 1], samples=[1, 3], stop=StopRules(versions=1))
    server.run()
    assert curve(server)[-1][2] == (1 * 1 + 3 * 2) / 4
    uniform = make_server(fedavg(2, weights="uniform"), speeds=[1, 1], samples=[1, 3], stop=StopRules(versions=1))
    uniform.run()
    assert curve(uniform)[-1][2] == 1.5


def test_clients_per_round_are_a_seeded_sample_of_the_idle_clients():
    events = []
    server = make_server(fedavg(6, per_round=3), speeds=[1] * 6, stop=StopRules(versions=3), events=events)
    server.run()
    rounds = {}
    for e in of_kind(events, "dispatch"):
        rounds.setdefault(e["tag"], []).append(e["client"])
    assert len(rounds) == 3 and all(len(c) == 3 for c in rounds.values())  # no round past the stop rule
    for r, clients in rounds.items():
        assert clients == sorted(int(c) for c in numpy_rng(0, "fedavg-sample", r).choice(range(6), 3, replace=False))


def test_over_selection_closes_at_the_first_k_and_counts_the_late_results():
    events = []
    server = make_server(
        fedavg(per_round=2, over_select=1.0), speeds=SPEEDS, steps=4, stop=StopRules(versions=2), events=events
    )
    server.run()
    agg = of_kind(events, "aggregation")
    assert [(e["virtual_s"], e["clients"], e["closed_by"]) for e in agg] == [
        (2.0, [1, 2], "first_k"),
        (4.0, [1, 2], "first_k"),
    ]
    # round 1 could only use clients 1 and 2: 0 and 3 were still busy with round 0
    assert curve(server)[-1][2] == ((2.5 + 2) + (2.5 + 3)) / 2
    drops = of_kind(events, "drop")
    assert [(d["client"], d["reason"], d["virtual_s"]) for d in drops] == [(0, "late", 4.0)]
    assert server.summary()["totals"]["dropped"] == {"late": 1}


def test_a_round_deadline_aggregates_what_arrived_and_drops_the_rest():
    events = []
    server = make_server(fedavg(deadline_s=3.0), speeds=SPEEDS, steps=4, stop=StopRules(versions=2), events=events)
    server.run()
    agg = of_kind(events, "aggregation")
    assert [(e["virtual_s"], e["clients"], e["closed_by"]) for e in agg] == [
        (3.0, [1, 2], "deadline"),
        (5.0, [1, 2], "all"),
    ]
    assert curve(server)[1][2] == 2.5
    assert server.summary()["totals"]["dropped"] == {"late": 1}  # client 0 at t=4; client 3 comes at t=8


def test_a_failed_job_shrinks_the_round_instead_of_blocking_it():
    transport = FakeTransport(fail=lambda job: "crash" if job.client == 3 and job.client_job == 0 else None)
    events = []
    server = make_server(
        fedavg(), speeds=SPEEDS, steps=4, transport=transport, stop=StopRules(versions=1), events=events
    )
    server.run()
    agg = of_kind(events, "aggregation")
    assert [(e["virtual_s"], e["clients"], e["closed_by"]) for e in agg] == [(8.0, [0, 1, 2], "failures")]
    assert curve(server)[-1][2] == 2.0
    assert server.summary()["totals"]["failed"] == {"crash": 1}


def test_a_round_whose_jobs_all_fail_closes_without_an_update_and_the_next_one_starts():
    transport = FakeTransport(fail=lambda job: "crash" if job.client_job == 0 else None)
    server = make_server(fedavg(), speeds=SPEEDS, steps=4, transport=transport, stop=StopRules(versions=1))
    server.run()
    assert curve(server) == [(0, 0.0, 0.0), (1, 16.0, 2.5)]
    assert server.summary()["totals"]["failed"] == {"crash": 4}


def test_a_rejected_update_is_counted_and_never_averaged():
    transport = FakeTransport(corrupt=lambda job: job.client == 3)
    server = make_server(fedavg(), speeds=SPEEDS, steps=4, transport=transport, stop=StopRules(versions=1))
    server.run()
    assert curve(server)[-1][2] == 2.0
    assert server.summary()["totals"]["rejected"] == {"non_finite": 1}


def test_more_clients_per_round_than_clients_is_a_config_error():
    with pytest.raises(ConfigError, match=r"schedule.per_round=5 exceeds clients.count=4"):
        fedavg(per_round=5)
    with pytest.raises(ConfigError, match=r"schedule.per_round=5 exceeds clients.count=4.*lower schedule.per_round"):
        validate_config({"clients": {"count": 4}, "schedule": {"name": "fedavg", "per_round": 5}})
