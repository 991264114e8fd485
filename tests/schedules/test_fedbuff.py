"""FedBuff on the fake world. Two clients with job durations 2 and 1 (speeds 1 and 2, 2 steps); client c
adds c + 1. Hand-worked timeline (K = 2):

    t=1  client 1 arrives (from v0, +2)            buffer 1
    t=2  client 0 arrives (from v0, +1)            buffer 2 -> v1
    t=2  client 1 arrives (from v0, +2), tau = 1   buffer 1
    t=3  client 1 arrives (from v1, +2), tau = 0   buffer 2 -> v2
"""

import math

import pytest

from fedlora.config import validate_config
from fedlora.engine.server import StopRules
from fedlora.errors import ConfigError
from fedlora.schedules.fedbuff import FedBuff, FedBuffOptions
from fedlora.schedules.staleness import StalenessOptions
from tests.engine.fakes import curve, make_server, of_kind


def fedbuff(n: int = 2, **options) -> FedBuff:
    options.setdefault("staleness", StalenessOptions(name="constant"))
    return FedBuff(FedBuffOptions(**options), num_clients=n, seed=0)


def test_the_server_steps_after_every_k_arrivals_by_the_mean_delta():
    events = []
    server = make_server(fedbuff(buffer_size=2), speeds=[1, 2], steps=2, stop=StopRules(versions=2), events=events)
    server.run()
    # v1 = 0 + (2 + 1) / 2; v2 = 1.5 + (2 + 2) / 2
    assert curve(server) == [(0, 0.0, 0.0), (1, 2.0, 1.5), (2, 3.0, 3.5)]
    agg = of_kind(events, "aggregation")
    assert [(e["clients"], e["staleness"], e["weights"]) for e in agg] == [
        ([1, 0], [0, 0], [0.5, 0.5]),
        ([1, 1], [1, 0], [0.5, 0.5]),
    ]
    assert agg[0]["terms"] == 1 + 2 * 2  # x, then +x_i and -x_start_i per buffered result


def test_staleness_weights_and_server_lr_enter_exactly_as_stated():
    opts = {"buffer_size": 2, "server_lr": 0.5, "staleness": StalenessOptions(name="polynomial", a=1.0)}
    events = []
    server = make_server(fedbuff(**opts), speeds=[1, 2], steps=2, stop=StopRules(versions=2), events=events)
    server.run()
    # v1 = 0 + 0.5 (0.5*2 + 0.5*1) = 0.75; v2 = 0.75 + 0.5 (0.5/(1+1) * 2 + 0.5 * 2) = 1.5
    assert curve(server) == [(0, 0.0, 0.0), (1, 2.0, 0.75), (2, 3.0, 1.5)]
    assert [e["weights"] for e in of_kind(events, "aggregation")] == [[0.5, 0.5], [0.25, 0.5]]


def test_with_many_clients_every_update_uses_exactly_k_arrivals_and_the_formula():
    speeds = [1.0, 0.75, 0.5, 1.5, 3.0]
    k, lr = 3, 0.5
    events = []
    server = make_server(
        fedbuff(5, buffer_size=k, server_lr=lr, staleness=StalenessOptions(name="polynomial", a=0.5)),
        speeds=speeds,
        steps=3,
        stop=StopRules(versions=12),
        events=events,
    )
    server.run()
    values = server.evaluator.dev.values  # one per version
    since = 0
    version = 0
    for e in events:
        if e["event"] == "arrival":
            since += 1
        elif e["event"] == "aggregation":
            assert since == k
            since = 0
            w = [(1 / k) * (1 + tau) ** -0.5 for tau in e["staleness"]]
            assert e["weights"] == pytest.approx(w, rel=1e-15)
            expected = values[version] + lr * sum(wi * (c + 1) for wi, c in zip(w, e["clients"], strict=True))
            version += 1
            assert values[version] == pytest.approx(expected, rel=1e-12)
    assert version == 12
    assert max(server.counters.staleness) > 0  # the timeline really is asynchronous


def test_results_staler_than_max_staleness_are_dropped_and_counted_never_used():
    events = []
    server = make_server(
        fedbuff(buffer_size=2, max_staleness=0), speeds=[1, 2], steps=2, stop=StopRules(versions=4), events=events
    )
    server.run()
    drops = of_kind(events, "drop")
    assert drops and all(d["reason"] == "stale" and d["staleness"] > 0 for d in drops)
    assert (drops[0]["client"], drops[0]["virtual_s"]) == (1, 2.0)  # the t=2 arrival of the timeline
    assert all(tau == 0 for e in of_kind(events, "aggregation") for tau in e["staleness"])
    assert server.summary()["totals"]["dropped"] == {"stale": len(drops)}
    assert len(of_kind(events, "arrival")) == 2 * 4 + len(drops)


def test_sample_weights_are_normalised_over_the_buffer():
    events = []
    server = make_server(
        fedbuff(buffer_size=2, weights="samples"),
        speeds=[1, 2],
        steps=2,
        samples=[1, 3],
        stop=StopRules(versions=1),
        events=events,
    )
    server.run()
    assert of_kind(events, "aggregation")[0]["weights"] == [0.75, 0.25]  # clients [1, 0]
    assert curve(server)[-1][2] == 0.75 * 2 + 0.25 * 1


def test_concurrency_bounds_the_clients_in_flight_and_draws_among_idle_clients():
    events = []
    server = make_server(
        fedbuff(6, buffer_size=2, concurrency=2), speeds=[1, 2, 1, 2, 1, 2], stop=StopRules(versions=10), events=events
    )
    server.run()
    in_flight = peak = 0
    for e in events:
        if e["event"] == "dispatch":
            in_flight += 1
            peak = max(peak, in_flight)
        elif e["event"] == "arrival":
            in_flight -= 1
    assert peak == 2
    assert {e["client"] for e in of_kind(events, "dispatch")} == set(range(6))


def test_concurrency_above_the_client_count_is_a_config_error():
    with pytest.raises(ConfigError, match="schedule.concurrency=3 exceeds clients.count=2"):
        fedbuff(concurrency=3)
    with pytest.raises(ConfigError, match="schedule.concurrency=30 exceeds clients.count=20"):
        validate_config({"clients": {"count": 20}, "schedule": {"name": "fedbuff", "concurrency": 30}})
    with pytest.raises(ConfigError, match="schedule.staleness.name"):
        validate_config({"schedule": {"name": "fedbuff", "staleness": {"name": "cubic"}}})


def test_default_staleness_is_the_papers_inverse_square_root():
    opts = FedBuffOptions()
    assert opts.staleness.name == "polynomial" and math.isclose(opts.staleness.a, 0.5)
