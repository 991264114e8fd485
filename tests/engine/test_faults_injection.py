"""Fault injection: bad updates and crashing clients are rejected or counted, never used, never blocking.

The exact fake world checks each attack on its own: a rejected update must act on the run exactly as a
job that failed (the schedule re-dispatches or drops it), and be counted under its reason. Real tiny
runs then check the counters in summary.json and a server killed and resumed mid-run.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from fedlora.engine.server import StopRules
from fedlora.io.state import load_adapter, load_state, save_state
from fedlora.schedules.fedbuff import FedBuff, FedBuffOptions
from tests.conftest import ASYNC_HETERO, run_killed
from tests.engine.fakes import FakeTransport, curve, make_server, of_kind
from tests.engine.malicious import EXPECTED_REASON, MaliciousTransport

SPEEDS = [1.0, 0.5, 0.25]
ATTACKED = (2, 5)  # job ids


def fedbuff():
    return FedBuff(FedBuffOptions(buffer_size=2), len(SPEEDS), seed=0)


def attacked_world(attack: str, events=None, **kw):
    transport = MaliciousTransport(FakeTransport(), {j: attack for j in ATTACKED})
    server = make_server(fedbuff(), speeds=SPEEDS, steps=2, transport=transport, events=events, **kw)
    transport.samples = server.transport.inner.samples = [8] * len(SPEEDS)
    return server


def crashing_world(**kw):
    fail = FakeTransport(fail=lambda job: "crash" if job.job_id in ATTACKED else None)
    return make_server(fedbuff(), speeds=SPEEDS, steps=2, transport=fail, **kw)


@pytest.mark.parametrize("attack", sorted(EXPECTED_REASON))
def test_a_bad_update_is_rejected_counted_and_acts_as_a_failed_job(attack):
    events = []
    server = attacked_world(attack, events=events, max_update_norm=100.0, stop=StopRules(versions=6))
    server.run()
    totals = server.summary()["totals"]
    assert totals["rejected"] == {EXPECTED_REASON[attack]: len(ATTACKED)} and totals["failed"] == {}
    assert sorted(server.transport.applied) == [(j, attack) for j in ATTACKED]  # collected in virtual-time order
    rejected = of_kind(events, "rejected")
    assert sorted((e["job"], e["reason"]) for e in rejected) == [(j, EXPECTED_REASON[attack]) for j in ATTACKED]
    assert all(e["message"] for e in rejected)  # a logged reason a person can read
    # the run went on exactly as if those jobs had crashed: nothing of the bad updates reached the model
    reference = crashing_world(stop=StopRules(versions=6))
    reference.run()
    assert curve(server) == curve(reference)
    assert server.version == 6 and all(math.isfinite(v) for _, _, v in curve(server))


ALPHA_ATTACKS = ("alpha_nan", "alpha_inf", "alpha_huge", "alpha_negative", "alpha_zero")


@pytest.mark.parametrize("attack", ALPHA_ATTACKS)
def test_a_reply_with_another_alpha_is_rejected_even_without_a_norm_bound(attack):
    server = attacked_world(attack, max_update_norm=None, stop=StopRules(versions=6))
    server.run()
    assert server.summary()["totals"]["rejected"] == {"wrong_alpha": len(ATTACKED)}
    reference = crashing_world(stop=StopRules(versions=6))
    reference.run()
    assert curve(server) == curve(reference)  # the claimed alpha never scaled anything
    assert all(f.alpha == 1.0 for f in server.global_adapter.layers.values())


def _null_update_world(**kw):
    """The attacked jobs return exactly what they were sent: what a rejected-at-aggregation update counts as."""
    transport = FakeTransport(increment=lambda job: 0.0 if job.job_id in ATTACKED else float(job.client + 1))
    return make_server(fedbuff(), speeds=SPEEDS, steps=2, transport=transport, **kw)


def test_an_update_that_breaks_the_aggregator_is_rejected_and_the_run_goes_on():
    events = []
    # rank 0: valid on its own (rank <= assigned, right shapes, finite), but FedIT needs equal ranks and raises
    server = attacked_world("under_rank", events=events, stop=StopRules(versions=6))
    server.run()
    totals = server.summary()["totals"]
    assert totals["rejected"] == {"aggregation_error": len(ATTACKED)} and totals["failed"] == {}
    rejected = of_kind(events, "rejected")
    assert sorted(e["job"] for e in rejected) == list(ATTACKED)
    assert all("equal ranks" in e["message"] for e in rejected)
    assert server.version == 6 and server.stopped_by == "versions"
    # the rejected updates count as the adapters their jobs started from; nothing else changes
    reference = _null_update_world(stop=StopRules(versions=6))
    reference.run()
    assert curve(server) == curve(reference)
    assert all(torch.isfinite(t).all() for t in server.global_adapter.tensors().values())


def test_an_update_rejected_at_aggregation_is_not_counted_again_after_a_resume(tmp_path):
    from fedlora.schedules.fedfa import FedFa, FedFaOptions

    def build():  # FedFa's window keeps the bad update for several combinations
        transport = MaliciousTransport(FakeTransport(), {2: "under_rank"})
        fedfa = FedFa(FedFaOptions(window=3), len(SPEEDS), seed=0)
        server = make_server(fedfa, speeds=SPEEDS, steps=2, transport=transport, stop=StopRules(versions=8))
        transport.samples = server.transport.inner.samples = [8] * len(SPEEDS)
        return server

    full = build()
    full.run()
    assert full.summary()["totals"]["rejected"] == {"aggregation_error": 1}
    killed = build()
    killed.start()
    while not (killed.combine_rejected and any(r.job.job_id == 2 for r in killed.schedule.window)):
        assert killed.step()
    save_state(tmp_path / "ckpt", killed.state_dict())
    resumed = build()
    resumed.load_state_dict(load_state(tmp_path / "ckpt"))
    resumed.run()
    strip = lambda s: {k: v for k, v in s.items() if k != "timing"}  # noqa: E731
    assert strip(resumed.summary()) == strip(full.summary())


def test_an_aggregator_bug_that_no_client_update_explains_still_ends_the_run():
    events = []
    server = make_server(fedbuff(), speeds=SPEEDS, steps=2, stop=StopRules(versions=6), events=events)

    def boom(terms):
        raise RuntimeError("an aggregator bug")

    server.aggregator.combine = boom  # fails on every input, the adapters the server sent included
    with pytest.raises(RuntimeError, match="an aggregator bug"):
        server.run()
    assert server.counters.rejected == {} and not of_kind(events, "rejected")  # no client is blamed


def test_a_client_crashing_mid_job_is_counted_and_its_client_gets_a_new_job():
    events = []
    server = crashing_world(events=events, stop=StopRules(versions=6))
    server.run()
    assert server.summary()["totals"]["failed"] == {"crash": len(ATTACKED)}
    assert (server.stopped_by, server.version) == ("versions", 6)
    for failure in of_kind(events, "failure"):
        later = [
            e for e in of_kind(events, "dispatch") if e["client"] == failure["client"] and e["job"] > failure["job"]
        ]
        assert later, f"client {failure['client']} was never given work again after its crash"


def test_a_killed_server_resumes_with_its_buffer_and_in_flight_jobs_and_the_same_counters(tmp_path):
    attacks = {2: "nan", 4: "crash", 6: "over_rank", 9: "unsolicited"}

    def build(path, **kw):
        transport = MaliciousTransport(FakeTransport(), attacks)
        server = make_server(
            fedbuff(),
            speeds=SPEEDS,
            steps=2,
            transport=transport,
            stop=StopRules(versions=8),
            checkpoint_every=1,
            save_checkpoint=lambda st: save_state(path, st),
            **kw,
        )
        transport.inner.samples = [8] * len(SPEEDS)
        return server

    full = build(tmp_path / "full")
    full.run()

    # killed between two events, with a result buffered and jobs in flight: the last state it saved
    killed = build(tmp_path / "unused")
    killed.start()
    while not (killed.version >= 4 and killed.schedule.buffer and killed.in_flight):
        assert killed.step()
    save_state(tmp_path / "ckpt", killed.state_dict())
    del killed
    state = load_state(tmp_path / "ckpt")
    assert state["schedule"]["buffer"] and state["in_flight"] and state["counters"]["rejected"]
    resumed = build(tmp_path / "ckpt")
    resumed.load_state_dict(state)
    resumed.run()
    summary = {k: v for k, v in resumed.summary().items() if k != "timing"}
    assert summary == {k: v for k, v in full.summary().items() if k != "timing"}
    assert summary["totals"]["rejected"] == {"non_finite": 1, "over_rank": 1, "unsolicited": 1}
    assert summary["totals"]["failed"] == {"crash": 1}
    assert resumed.version == 8 and math.isfinite(curve(resumed)[-1][2])


# ----- real training: the counters in summary.json ---------------------------------------------------------
REAL = [
    *ASYNC_HETERO,
    "stop.versions=5",
    "validation.max_update_norm=100",
]
REAL_ATTACKS = {
    1: "nan",
    2: "wrong_shape",
    3: "over_rank",
    4: "wrong_layers",
    5: "over_norm",
    6: "duplicate",
    7: "unsolicited",
    8: "crash",
}


def _attack(monkeypatch, attacks):
    import fedlora.experiment as experiment

    make = experiment.make_transport
    monkeypatch.setattr(experiment, "make_transport", lambda *a, **kw: MaliciousTransport(make(*a, **kw), attacks))


@pytest.mark.slow
def test_a_real_run_under_attack_finishes_with_a_valid_model_and_counts_every_reason(
    tiny_config, tmp_path, monkeypatch
):
    from fedlora.experiment import run_experiment

    _attack(monkeypatch, REAL_ATTACKS)
    run_experiment(tiny_config(*REAL), out=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    totals = summary["totals"]
    assert totals["rejected"] == {
        "duplicate": 1,
        "non_finite": 1,
        "over_norm": 1,
        "over_rank": 1,
        "unsolicited": 1,
        "wrong_layers": 1,
        "wrong_shape": 1,
    }
    assert totals["failed"] == {"crash": 1}
    assert summary["stopped_by"] == "versions" and totals["versions"] == 5
    assert all(math.isfinite(v) for v in summary["final"]["metrics"].values())
    adapter = load_adapter(tmp_path / "run" / "global_adapter.safetensors")
    assert all(torch.isfinite(t).all() for t in adapter.tensors().values())


@pytest.mark.slow
def test_a_real_server_killed_mid_run_resumes_to_the_same_summary(tiny_config, tmp_path, monkeypatch):
    from fedlora.experiment import deterministic_view, run_experiment

    attacks = {2: "nan", 5: "crash"}
    _attack(monkeypatch, attacks)
    cfg = tiny_config(*REAL, "stop.versions=4")
    full = run_experiment(cfg, out=tmp_path / "full")

    run_killed(cfg, tmp_path / "killed", at_version=3)
    state = load_state(tmp_path / "killed" / "checkpoints" / "checkpoint")
    assert state["in_flight"]  # the checkpoint holds jobs in flight
    resumed = run_experiment(cfg, out=tmp_path / "killed", resume=True)
    assert deterministic_view(resumed) == deterministic_view(full)
    assert resumed["totals"]["rejected"] == {"non_finite": 1} and resumed["totals"]["failed"] == {"crash": 1}
    assert resumed["totals"]["versions"] == 4


@pytest.mark.slow
def test_a_real_run_never_takes_a_clients_alpha_even_without_a_norm_bound(tiny_config, tmp_path, monkeypatch):
    from fedlora.experiment import run_experiment

    # HLoRA with alpha 1e30 used to make the global delta ~1e30; NaN alphas used to end the run
    _attack(monkeypatch, {1: "alpha_huge", 2: "alpha_nan", 3: "alpha_zero", 4: "wrong_dtype", 5: "malformed"})
    cfg = tiny_config(*ASYNC_HETERO, "stop.versions=4")
    assert cfg.validation.max_update_norm is None
    summary = run_experiment(cfg, out=tmp_path / "run")
    assert summary["totals"]["rejected"] == {"malformed": 1, "wrong_alpha": 3, "wrong_dtype": 1}
    assert summary["totals"]["versions"] == 4
    adapter = load_adapter(tmp_path / "run" / "global_adapter.safetensors")
    assert set(adapter.alphas().values()) == {cfg.lora.alpha}
    assert all(f.delta().abs().max() < 10 for f in adapter.layers.values())


@pytest.mark.slow
def test_a_real_update_that_breaks_the_aggregator_is_rejected_and_the_run_finishes(tiny_config, tmp_path, monkeypatch):
    from fedlora.experiment import run_experiment

    _attack(monkeypatch, {2: "under_rank"})  # fedit needs equal ranks: its combine raises on this update
    cfg = tiny_config("training.threads=1", "clients.count=3", "schedule={name: fedbuff, buffer_size: 2}")
    summary = run_experiment(cfg, out=tmp_path / "run")
    assert summary["totals"]["rejected"] == {"aggregation_error": 1}
    assert summary["stopped_by"] == "versions" and summary["totals"]["versions"] == 3
    assert all(math.isfinite(v) for v in summary["final"]["metrics"].values())
