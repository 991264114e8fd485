"""FedFa on the fake world. Three clients with job durations 4, 2, 1 (speeds 1, 2, 4; 4 steps); client c
adds c + 1; window K = 2, mode models. Hand-worked timeline:

    t=1  client 2 (from v0 = 0)     3     arrival 1: warm-up, no update
    t=2  client 1 (from v0 = 0)     2     window [3, 2]       -> v1 = 2.5
    t=2  client 2 (from v0 = 0)     3     window [2, 3]       -> v2 = 2.5
    t=3  client 2 (from v2 = 2.5)   5.5   window [3, 5.5]     -> v3 = 4.25
    t=4  client 0 (from v0 = 0)     1     window [5.5, 1]     -> v4 = 3.25
    t=4  client 1 (from v1 = 2.5)   4.5   window [1, 4.5]     -> v5 = 2.75
    t=4  client 2 (from v3 = 4.25)  7.25  window [4.5, 7.25]  -> v6 = 5.875
"""

import pytest

from fedlora.engine.server import StopRules
from fedlora.schedules.fedfa import FedFa, FedFaOptions
from tests.engine.fakes import curve, make_server, of_kind


def fedfa(n: int = 3, **options) -> FedFa:
    return FedFa(FedFaOptions(**options), num_clients=n, seed=0)


def test_no_update_before_warm_up_then_the_window_mean_on_every_arrival():
    events = []
    server = make_server(fedfa(window=2), speeds=[1, 2, 4], steps=4, stop=StopRules(versions=6), events=events)
    server.run()
    assert curve(server) == [
        (0, 0.0, 0.0),
        (1, 2.0, 2.5),
        (2, 2.0, 2.5),
        (3, 3.0, 4.25),
        (4, 4.0, 3.25),
        (5, 4.0, 2.75),
        (6, 4.0, 5.875),
    ]
    first = of_kind(events, "arrival")[0]
    assert (first["virtual_s"], first["version"]) == (1.0, 0)
    # during warm-up the finished client restarts from the unchanged global adapter
    redispatch = [d for d in of_kind(events, "dispatch") if d["virtual_s"] == 1.0]
    assert [(d["client"], d["version"]) for d in redispatch] == [(2, 0)]


def test_the_finished_client_gets_the_new_global_adapter_at_once():
    events = []
    server = make_server(fedfa(window=2), speeds=[1, 2, 4], steps=4, stop=StopRules(versions=6), events=events)
    server.run()
    for i, e in enumerate(events):
        if e["event"] == "aggregation":
            arrival = next(a for a in reversed(events[:i]) if a["event"] == "arrival")
            after = next((d for d in events[i:] if d["event"] == "dispatch"), None)
            if e["version"] == 6:  # the last version: the stop rule holds, nothing more is dispatched
                assert after is None
                continue
            assert (after["client"], after["virtual_s"]) == (arrival["client"], arrival["virtual_s"])
            assert after["version"] == e["version"]  # dispatched from the version this arrival made


@pytest.mark.parametrize("weights", ["uniform", "samples"])
def test_with_many_clients_every_arrival_after_warm_up_sets_the_window_combination(weights):
    k = 4
    samples = [1, 2, 3, 4, 5, 6]
    events = []
    server = make_server(
        fedfa(6, window=k, weights=weights),
        speeds=[1.0, 0.75, 0.5, 1.5, 3.0, 2.0],
        steps=3,
        samples=samples,
        stop=StopRules(versions=20),
        events=events,
    )
    server.run()
    values = server.evaluator.dev.values
    window: list[tuple[int, float]] = []
    arrivals = version = 0
    for e in events:
        if e["event"] == "arrival":
            arrivals += 1
            window = [*window, (e["client"], server.transport.values[e["job"]])][-k:]
        elif e["event"] == "aggregation":
            assert arrivals >= k and e["clients"] == [c for c, _ in window]
            raw = [1.0 if weights == "uniform" else samples[c] for c, _ in window]
            expected = sum(w * v for w, (_, v) in zip(raw, window, strict=True)) / sum(raw)
            version += 1
            assert values[version] == pytest.approx(expected, rel=1e-12)
    assert version == 20 == arrivals - k + 1  # one update per arrival once the window is full


def test_deltas_mode_steps_from_the_global_adapter_by_the_mean_window_delta():
    events = []
    server = make_server(
        fedfa(window=2, mode="deltas", server_lr=0.5),
        speeds=[1, 2, 4],
        steps=4,
        stop=StopRules(versions=6),
        events=events,
    )
    server.run()
    values = server.evaluator.dev.values
    for v, e in enumerate(of_kind(events, "aggregation")):
        # every delta is its client's increment c + 1
        assert values[v + 1] == values[v] + 0.5 * sum(c + 1 for c in e["clients"]) / 2
        assert e["terms"] == 1 + 2 * 2
    assert values[1] == 1.25  # 0 + 0.5 * (3 + 2) / 2


def test_concurrency_above_the_client_count_is_refused():
    from fedlora.errors import ConfigError

    with pytest.raises(ConfigError, match="schedule.concurrency=4 exceeds clients.count=3"):
        fedfa(concurrency=4)


@pytest.mark.parametrize("mode", ["models", "deltas"])
def test_staleness_weighting_damps_the_stale_window_results(mode):
    """With s(tau) = 1/(1+tau) the recorded weights are the base 1/K times s, renormalised in models mode."""
    from fedlora.schedules.staleness import StalenessOptions

    events = []
    options = {"window": 2, "mode": mode, "staleness": StalenessOptions(name="polynomial", a=1.0)}
    server = make_server(fedfa(**options), speeds=[1, 2, 4], steps=4, stop=StopRules(versions=6), events=events)
    server.run()
    for agg in of_kind(events, "aggregation"):
        raw = [0.5 / (1.0 + t) for t in agg["staleness"]]
        want = [w / sum(raw) for w in raw] if mode == "models" else raw
        assert agg["weights"] == pytest.approx(want, rel=1e-12)
    assert any(max(a["staleness"]) > 0 for a in of_kind(events, "aggregation"))
