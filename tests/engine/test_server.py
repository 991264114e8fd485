"""The server loop on the fake world: event order, stop rules, evaluation on the clock, faults, resume."""

import math

import pytest

from fedlora.clients.availability import Availability
from fedlora.engine.faults import Faults
from fedlora.engine.server import StopRules
from fedlora.io.state import load_state, save_state
from fedlora.schedules.fedasync import FedAsync, FedAsyncOptions
from fedlora.schedules.fedavg import FedAvg, FedAvgOptions
from fedlora.schedules.fedbuff import FedBuff, FedBuffOptions
from fedlora.schedules.fedfa import FedFa, FedFaOptions
from fedlora.schedules.staleness import StalenessOptions
from tests.engine.fakes import FakeTransport, ScriptedAvailability, curve, make_server, of_kind, strip_real

SPEEDS = [1.0, 0.75, 0.5, 1.5, 3.0, 2.0]


def schedules(n: int = 6):
    """One of each, with settings that exercise their buffers and windows."""
    return {
        "fedavg": lambda: FedAvg(FedAvgOptions(per_round=4, over_select=0.5), n, seed=3),
        "fedbuff": lambda: FedBuff(FedBuffOptions(buffer_size=3, concurrency=4, max_staleness=3), n, seed=3),
        "fedasync": lambda: FedAsync(FedAsyncOptions(alpha=0.5, concurrency=5, next_client="random"), n, seed=3),
        "fedfa": lambda: FedFa(FedFaOptions(window=3, mode="deltas", server_lr=0.5), n, seed=3),
    }


def fedasync_last_arrival():
    """a = 1, s = 1 on clients with job durations 6 and 3: versions at t = 3, 6, 6, 9, 12, 12 with numbers
    2, 1, 4, 6, 2, 8 (see tests/schedules/test_fedasync.py); every job trains 6 x 4 = 24 samples."""
    return FedAsync(FedAsyncOptions(alpha=1.0, staleness=StalenessOptions(name="constant")), 2, seed=0)


# ----- ordering ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fedavg", "fedbuff", "fedasync", "fedfa"])
def test_events_do_not_depend_on_the_order_in_which_the_transport_computes_results(name):
    runs = {}
    for order in ("fifo", "reverse", "random"):
        events = []
        transport = FakeTransport(order=order, seed=11)
        server = make_server(
            schedules()[name](), speeds=SPEEDS, steps=3, transport=transport, stop=StopRules(versions=15), events=events
        )
        server.run()
        runs[order] = (strip_real(events), transport.computed)
    assert runs["reverse"][0] == runs["fifo"][0] == runs["random"][0]
    assert runs["reverse"][1] != runs["fifo"][1] and runs["random"][1] != runs["fifo"][1]


# ----- stop rules -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stop,stopped_by,version,now",
    [
        (StopRules(versions=4), "versions", 4, 9.0),
        (StopRules(virtual_seconds=7.0), "virtual_seconds", 3, 7.0),
        (StopRules(target=4.0), "target", 3, 6.0),
        (StopRules(samples=48), "samples", 2, 6.0),
        # whichever comes first
        (StopRules(versions=10, virtual_seconds=100.0, samples=72, target=7.0), "samples", 3, 6.0),
        (StopRules(versions=10, virtual_seconds=10.0, samples=1000, target=7.0), "virtual_seconds", 4, 10.0),
    ],
)
def test_stop_rules(stop, stopped_by, version, now):
    server = make_server(fedasync_last_arrival(), speeds=[1, 2], steps=6, stop=stop)
    server.run()
    assert (server.stopped_by, server.version, server.now) == (stopped_by, version, now)
    assert server.history[-1]["virtual_s"] == now  # the final state is always on the curve


def test_time_to_target_is_recorded_and_the_run_may_go_on():
    server = make_server(fedasync_last_arrival(), speeds=[1, 2], steps=6, stop=StopRules(versions=6, target=4.0))
    server.run()
    assert server.stopped_by == "target"
    assert server.time_to_target == {"version": 3, "virtual_s": 6.0, "samples": 72, "bytes": (4 + 3) * 24}
    # 4 dispatches down and 3 arrivals up of 24 bytes each by the third arrival
    on = make_server(
        fedasync_last_arrival(), speeds=[1, 2], steps=6, stop=StopRules(versions=6, target=4.0, target_stops=False)
    )
    on.run()
    assert (on.stopped_by, on.version) == ("versions", 6)
    assert on.summary()["time_to_target"] == server.time_to_target


# ----- evaluation on the clock ----------------------------------------------------------------------------
def test_clock_ticks_at_an_unchanged_version_add_points_without_recomputing():
    # one client, jobs of 8 s: versions at t = 8 and 16; ticks every 2 s
    server = make_server(
        FedAvg(FedAvgOptions(), 1, seed=0),
        speeds=[0.5],
        steps=4,
        stop=StopRules(versions=2),
        eval_every_versions=None,
        eval_every_seconds=2.0,
    )
    server.run()
    assert [(v, t) for v, t, _ in curve(server)] == [(0, 0.0)] + [(0, t) for t in (2.0, 4.0, 6.0)] + [
        (1, 8.0),
        (1, 10.0),
        (1, 12.0),
        (1, 14.0),
        (2, 16.0),
    ]
    assert server.evaluator.dev.calls == 3  # versions 0, 1, 2 only
    assert [p.get("reused", False) for p in server.history] == [False, True, True, True, False, True, True, True, False]
    assert [v for _, _, v in curve(server)] == [0, 0, 0, 0, 1, 1, 1, 1, 2]


def test_ticks_stay_on_multiples_of_the_period():
    server = make_server(
        FedAvg(FedAvgOptions(), 1, seed=0),
        speeds=[1.0],
        stop=StopRules(virtual_seconds=1.0),
        eval_every_versions=None,
        eval_every_seconds=0.1,
    )
    server.run()
    assert [p["virtual_s"] for p in server.history] == [round(0.1 * k, 6) for k in range(11)]


def test_metrics_at_time_budgets():
    server = make_server(
        FedAvg(FedAvgOptions(), 1, seed=0),
        speeds=[0.5],
        steps=4,
        stop=StopRules(virtual_seconds=20.0),
        eval_every_versions=None,
        time_budgets=[9.0, 5.0, 100.0],
    )
    server.run()
    assert server.summary()["at_time"] == {
        "5": {"version": 0, "metrics": {"accuracy": 0.0}},
        "9": {"version": 1, "metrics": {"accuracy": 1.0}},
        "100": None,  # the run stopped at 20 s
    }
    assert [p["virtual_s"] for p in server.history] == [0.0, 5.0, 9.0, 20.0]


def test_a_run_with_nothing_left_to_do_stops_idle_despite_clock_ticks():
    never = Faults(seed=0, availability=ScriptedAvailability({0: [(0.0, math.inf)]}))
    server = make_server(
        FedAvg(FedAvgOptions(), 1, seed=0),
        speeds=[1.0],
        faults=never,
        eval_every_seconds=1.0,
        stop=StopRules(versions=3),
    )
    server.run()
    assert server.stopped_by == "idle" and server.version == 0


# ----- the heterogeneous world ----------------------------------------------------------------------------------
def test_idle_fraction_counts_the_time_fast_clients_wait_for_a_round():
    # durations 2 and 4: client 0 waits 2 s of every 4 s round
    server = make_server(
        FedAvg(FedAvgOptions(), 2, seed=0), speeds=[1.0, 0.5], steps=2, stop=StopRules(virtual_seconds=8)
    )
    server.run()
    totals = server.summary()["totals"]
    assert (totals["busy_fraction"], totals["idle_fraction"], totals["offline_fraction"]) == (0.75, 0.25, 0.0)
    fa = make_server(
        FedFa(FedFaOptions(window=2), 2, seed=0), speeds=[1.0, 0.5], steps=2, stop=StopRules(virtual_seconds=8)
    )
    fa.run()
    assert fa.summary()["totals"]["idle_fraction"] == 0.0  # nobody ever waits


def test_an_offline_client_is_never_dispatched_its_job_fails_and_it_returns_when_back_online():
    # client 1's first job runs 0 -> 2 but it drops at 1.5 and is back at 4
    av = ScriptedAvailability({1: [(1.5, 4.0)]})
    events = []
    server = make_server(
        FedBuff(FedBuffOptions(buffer_size=2), 3, seed=0),
        speeds=[1.0, 1.0, 1.0],
        steps=2,
        faults=Faults(seed=0, availability=av),
        stop=StopRules(virtual_seconds=8.0),
        events=events,
    )
    server.run()
    failures = of_kind(events, "failure")
    assert [(f["client"], f["reason"], f["virtual_s"]) for f in failures] == [(1, "offline", 1.5)]
    c1 = [d["virtual_s"] for d in of_kind(events, "dispatch") if d["client"] == 1]
    assert c1 == [0.0, 4.0, 6.0, 8.0]  # woken when it came back, then after every job
    failed_job = failures[0]["job"]
    assert failed_job not in server.transport.submitted  # never computed
    totals = server.summary()["totals"]
    assert totals["failed"] == {"offline": 1}
    assert totals["offline_fraction"] == round(2.5 / 24, 6)
    assert totals["busy_fraction"] + totals["idle_fraction"] + totals["offline_fraction"] == pytest.approx(
        1.0, abs=1e-5
    )


def test_a_synchronous_round_waits_until_a_client_is_online():
    av = ScriptedAvailability({0: [(0.0, 5.0)], 1: [(0.0, 3.0)]})
    events = []
    server = make_server(
        FedAvg(FedAvgOptions(), 2, seed=0),
        speeds=[1.0, 1.0],
        faults=Faults(seed=0, availability=av),
        stop=StopRules(versions=3),  # the third round (at 5) is the last: nothing is dispatched after it
        events=events,
    )
    assert server.idle_clients() == []
    server.run()
    dispatches = [(d["client"], d["virtual_s"]) for d in of_kind(events, "dispatch")]
    # nobody is online until 3; rounds take whoever is online when they start; client 0 is back at 5
    assert dispatches == [(1, 3.0), (1, 4.0), (0, 5.0), (1, 5.0)]


def test_crashed_jobs_are_counted_their_clients_free_up_and_nothing_is_computed_for_them():
    faults = Faults(seed=5, failure_prob=0.3)
    events = []
    server = make_server(
        FedBuff(FedBuffOptions(buffer_size=2), 4, seed=0),
        speeds=[1.0, 2.0, 0.5, 1.0],
        faults=faults,
        stop=StopRules(versions=20),
        events=events,
    )
    server.run()
    failures = of_kind(events, "failure")
    assert failures and server.summary()["totals"]["failed"] == {"crash": len(failures)}
    assert not {f["job"] for f in failures} & set(server.transport.submitted)
    assert len(of_kind(events, "dispatch")) == len(of_kind(events, "arrival")) + len(failures) + len(server.in_flight)
    for f in failures:  # the client gets work again at once
        assert any(d["client"] == f["client"] and d["virtual_s"] == f["virtual_s"] for d in of_kind(events, "dispatch"))


def test_the_server_refuses_to_dispatch_a_busy_or_offline_client():
    server = make_server(
        FedAvg(FedAvgOptions(), 2, seed=0),
        speeds=[1.0, 1.0],
        faults=Faults(seed=0, availability=ScriptedAvailability({1: [(0.0, 1.0)]})),
    )
    server.dispatch(0, tag=0)
    with pytest.raises(RuntimeError, match="already has a job"):
        server.dispatch(0, tag=0)
    with pytest.raises(RuntimeError, match="offline"):
        server.dispatch(1, tag=0)


# ----- checkpoint and resume -----------------------------------------------------------------------------------
class Killed(RuntimeError):
    pass


def world_with_faults():
    return Faults(seed=2, failure_prob=0.15, availability=Availability(2, mean_online_s=20.0, mean_offline_s=5.0))


@pytest.mark.parametrize("name", ["fedavg", "fedbuff", "fedasync", "fedfa"])
def test_a_killed_async_run_resumes_to_exactly_the_uninterrupted_run(name, tmp_path):
    def build(events, path, **kw):
        return make_server(
            schedules()[name](),
            speeds=SPEEDS,
            steps=3,
            faults=world_with_faults(),
            stop=StopRules(versions=14),
            events=events,
            eval_every_seconds=2.5,
            time_budgets=[10.0],
            checkpoint_every=1,
            save_checkpoint=lambda st: save_state(path, st),
            **kw,
        )

    full_events = []
    full = build(full_events, tmp_path / "full")
    full.run()

    def kill_at_9(server):
        if server.version == 9:
            raise Killed

    killed_events = []
    ckpt = tmp_path / "ckpt"
    killed = build(killed_events, ckpt, on_version=kill_at_9)
    with pytest.raises(Killed):
        killed.run()
    state = load_state(ckpt)
    assert state["version"] == 8 and state["in_flight"]  # jobs were in flight at the checkpoint
    resumed_events = killed_events[: state["events_written"]]
    resumed = build(resumed_events, ckpt)
    resumed.load_state_dict(state)
    resumed.run()

    def deterministic(summary):
        return {k: v for k, v in summary.items() if k != "timing"}

    assert deterministic(resumed.summary()) == deterministic(full.summary())
    assert strip_real(resumed_events) == strip_real(full_events)
    assert full.summary()["totals"]["failed"]  # the faults really happened

    # stopped between any two events (here: with results buffered, jobs in flight, timers pending)
    buffered = []
    for cut in (5, 11, 19):
        part_events = []
        part = build(part_events, tmp_path / f"part{cut}")
        part.start()
        for _ in range(cut):
            assert part.step(), "cut after the end of the run"
        save_state(tmp_path / f"cut{cut}", part.state_dict())
        state = load_state(tmp_path / f"cut{cut}")
        sched = state["schedule"]
        buffered.append(len(sched.get("buffer", sched.get("window", []))))
        kept = part_events[: state["events_written"]]
        again = build(kept, tmp_path / f"again{cut}")
        again.load_state_dict(state)
        again.run()
        assert deterministic(again.summary()) == deterministic(full.summary())
        assert strip_real(kept) == strip_real(full_events)
    if name != "fedasync":
        assert any(buffered), "no cut point had results buffered"
