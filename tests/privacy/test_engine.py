"""The privacy step in the server loop, on the fake world: budgets, ledgers per schedule, rejections."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("dp_accounting")

from fedlora.errors import UpdateRejected
from fedlora.jobs import Job, JobResult
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.privacy.accounting import planned_epsilon
from fedlora.privacy.engine import PrivacyEngine, PrivacySettings
from fedlora.schedules.fedavg import FedAvg, FedAvgOptions
from fedlora.schedules.fedbuff import FedBuff, FedBuffOptions
from fedlora.schedules.fedfa import FedFa, FedFaOptions
from tests.engine.fakes import BATCH, FakeTransport, StopRules, make_server, num_adapter, of_kind

SPEEDS = [1.0, 0.5, 0.25, 2.0]


class NoisyWorld(FakeTransport):
    """The fake world without its exactness checks (noise moves A off 1): result = start + increment."""

    def _compute(self, job: Job) -> JobResult:
        start = job.start_adapter
        f = start.layers["w"]
        inc = float(job.client + 1) / 8
        adapter = Adapter(
            layers={"w": LoRAFactors(f.A.clone(), f.B + inc, f.alpha)},
            extras={"head": start.extras["head"] + inc},
        )
        return JobResult(job, adapter, num_samples=self.samples[job.client], samples_trained=job.steps * BATCH)


def b_value(adapter: Adapter) -> dict[str, float]:
    return {"accuracy": float(adapter.layers["w"].B[0, 0])}


def server(schedule, privacy: PrivacyEngine, events: list | None = None, **kw):
    return make_server(
        schedule,
        speeds=SPEEDS,
        steps=2,
        transport=NoisyWorld(),
        privacy=privacy,
        evaluate=b_value,
        events=events if events is not None else [],
        **kw,
    )


def engine(sigma=1.0, clip=0.5, where="server", budget=None, q=None) -> PrivacyEngine:
    s = PrivacySettings(clip_norm=clip, noise_multiplier=sigma, delta=1e-5, where=where, budget=budget, sampling_rate=q)
    return PrivacyEngine(s, "factor", rank=1)


def test_a_run_stops_before_the_release_that_would_exceed_the_budget():
    events: list = []
    priv = engine(sigma=2.0, budget=4.0)
    srv = server(
        FedBuff(FedBuffOptions(buffer_size=2), len(SPEEDS), seed=0), priv, events, stop=StopRules(versions=100)
    )
    srv.run()
    assert srv.stopped_by == "epsilon" and 0 < srv.version < 100
    summary = srv.summary()
    assert summary["privacy"]["epsilon"] <= 4.0
    # one more release of the clients it would hold would have gone over
    assert priv.accountant.after(dict.fromkeys(range(len(SPEEDS)), 2.0)) > 4.0
    evals = of_kind(events, "evaluation")
    assert evals and all("epsilon" in e for e in evals)
    aggs = of_kind(events, "aggregation")
    assert all(a["dp_noise_std"] > 0 and a["epsilon"] is not None for a in aggs)
    assert [a["epsilon"] for a in aggs] == sorted(a["epsilon"] for a in aggs)  # epsilon only grows


def test_fedavg_with_uniform_sampling_spends_one_subsampled_release_per_version():
    priv = engine(sigma=1.0, q=0.5)
    srv = server(FedAvg(FedAvgOptions(per_round=2), len(SPEEDS), seed=0), priv, stop=StopRules(versions=4))
    srv.run()
    assert srv.version == 4 and priv.accountant.releases == 4
    assert priv.epsilon() == pytest.approx(planned_epsilon(1.0, 1e-5, "rdp", 4, 0.5))
    assert srv.summary()["privacy"]["accounting"] == "subsampled"


def test_fedfa_charges_a_client_once_per_window_its_update_is_in():
    events: list = []
    priv = engine(sigma=1.0)
    opts = FedFaOptions(window=3, concurrency=2)
    srv = server(FedFa(opts, len(SPEEDS), seed=0), priv, events, stop=StopRules(versions=6))
    srv.run()
    held: dict[int, int] = {}
    for agg in of_kind(events, "aggregation"):
        for c in set(agg["clients"]):
            held[c] = held.get(c, 0) + 1
    ledgers = {c: sum(n for n in ledger.values()) for c, ledger in priv.accountant.clients.items()}
    assert ledgers == held
    assert max(held.values()) > 1  # a window reuses updates: charged again each time


def test_client_side_noise_counts_every_dispatched_job_and_stops_at_the_budget():
    priv = engine(sigma=3.0, where="client", budget=2.0)
    srv = server(FedBuff(FedBuffOptions(buffer_size=2), len(SPEEDS), seed=0), priv, stop=StopRules(versions=200))
    srv.run()
    assert srv.stopped_by == "epsilon"
    ledgers = {c: sum(ledger.values()) for c, ledger in priv.accountant.clients.items()}
    assert ledgers == {c: n for c, n in enumerate(srv.client_jobs) if n}
    assert priv.epsilon() <= 2.0


def test_the_ledger_and_noise_resume_exactly_from_a_checkpoint():
    def fresh(states=None):
        return server(
            FedBuff(FedBuffOptions(buffer_size=2), len(SPEEDS), seed=0),
            engine(sigma=1.0),
            stop=StopRules(versions=5),
            save_checkpoint=states.append if states is not None else None,
            checkpoint_every=1 if states is not None else None,
        )

    whole = fresh()
    whole.run()
    states: list = []
    first = fresh(states)
    first.run()
    resumed = fresh()
    resumed.load_state_dict(states[1])
    resumed.run()
    assert torch.equal(resumed.global_adapter.layers["w"].B, whole.global_adapter.layers["w"].B)
    assert resumed.privacy.epsilon() == whole.privacy.epsilon()
    assert resumed.summary()["privacy"] == whole.summary()["privacy"]


def test_under_central_noise_an_update_that_changes_a_frozen_factor_is_rejected():
    start = num_adapter(1.0)
    job = Job(0, 0, 0, 1, 1.0, 0, start, 1, 0.0, 1.0, 0, 0, trains="B")
    moved = Adapter(layers={"w": LoRAFactors(start.layers["w"].A + 1, start.layers["w"].B, 1.0)}, extras=start.extras)
    with pytest.raises(UpdateRejected) as info:
        engine().check_arrival(job, moved)
    assert info.value.reason == "changed_frozen"
    engine().check_arrival(job, start)  # unchanged A: accepted


def test_without_noise_epsilon_is_infinite_and_reported_as_null():
    priv = engine(sigma=0.0, clip=math.inf)
    srv = server(FedBuff(FedBuffOptions(buffer_size=2), len(SPEEDS), seed=0), priv, stop=StopRules(versions=2))
    srv.run()
    assert math.isinf(priv.epsilon()) and srv.summary()["privacy"]["epsilon"] is None
