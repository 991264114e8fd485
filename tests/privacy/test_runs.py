"""Privacy on the tiny model: no-op settings reproduce the non-private run bit for bit; noised runs report
epsilon everywhere, resume exactly, refuse a budget they cannot keep; client noise is on the wire."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

pytest.importorskip("dp_accounting")

from fedlora.errors import ConfigError
from fedlora.experiment import build, deterministic_view, run, run_experiment
from fedlora.io.rundir import read_events
from fedlora.transports import make_transport
from tests.conftest import ASYNC_HETERO, run_killed

OFF_CENTRAL = "privacy={clip_norm: .inf, noise_multiplier: 0.0, where: server}"
OFF_CLIENT = "privacy={clip_norm: .inf, noise_multiplier: 0.0, where: client}"
THREADS = "training.threads=1"


def global_run(cfg):
    components = build(cfg)
    return run(components, make_transport(cfg, components))


def same_adapter(a, b) -> bool:
    ta, tb = a.tensors(), b.tensors()
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.parametrize(
    "overrides",
    [
        ("schedule.per_round=2",),  # fedit, fedavg: factor space
        tuple(ASYNC_HETERO),  # hlora, fedbuff, mixed ranks: product space
    ],
    ids=["fedit-fedavg", "hlora-fedbuff"],
)
def test_zero_noise_and_infinite_clip_reproduce_the_non_private_run_bit_for_bit(tiny_config, overrides):
    plain = global_run(tiny_config(THREADS, *overrides))
    for off in (OFF_CENTRAL, OFF_CLIENT):
        private = global_run(tiny_config(THREADS, *overrides, off))
        assert same_adapter(private.global_adapter, plain.global_adapter), off
        assert [p["metrics"] for p in private.history] == [p["metrics"] for p in plain.history]


@pytest.mark.parametrize(
    "overrides",
    [
        ("schedule.per_round=2", "privacy={clip_norm: 0.5, epsilon: 8.0}"),
        (*ASYNC_HETERO, "privacy={clip_norm: 0.5, noise_multiplier: 0.8}", "stop.epsilon=50"),
        ("aggregator.name=ffa", "privacy={clip_norm: 0.5, epsilon: 8.0, where: client}"),
    ],
    ids=["fedit-subsampled-target", "hlora-fedbuff-central", "ffa-client"],
)
def test_a_private_run_reports_epsilon_in_events_and_summary(tiny_config, tmp_path, overrides):
    summary = run_experiment(tiny_config(THREADS, *overrides), out=tmp_path / "run")
    p = summary["privacy"]
    assert p["epsilon"] is not None and 0 < p["epsilon"] <= (p["budget"] or float("inf"))
    events = read_events(tmp_path / "run" / "events.jsonl")
    evals = [e for e in events if e["event"] == "evaluation"]
    assert evals and all("epsilon" in e for e in evals)
    assert evals[-1]["epsilon"] == p["epsilon"]
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["privacy"]["epsilon"] == p["epsilon"]
    if p["where"] == "server":
        aggs = [e for e in events if e["event"] == "aggregation"]
        assert all(a["dp_noise_std"] > 0 for a in aggs)
    if p["target_epsilon"] is not None:
        assert p["epsilon"] <= p["target_epsilon"] * (1 + 1e-6)


def test_a_killed_private_run_resumes_to_exactly_the_uninterrupted_numbers(tiny_config, tmp_path):
    overrides = (THREADS, *ASYNC_HETERO, "stop.versions=4", "privacy={clip_norm: 0.5, noise_multiplier: 0.8}")
    whole = run_experiment(tiny_config(*overrides), out=tmp_path / "whole")
    run_killed(tiny_config(*overrides), tmp_path / "killed", at_version=2)
    resumed = run_experiment(tiny_config(*overrides), out=tmp_path / "killed", resume=True)
    assert deterministic_view(resumed) == deterministic_view(whole)


def test_a_budget_the_planned_run_would_exceed_refuses_to_start(tiny_config):
    cfg = tiny_config("schedule.per_round=2", "privacy={clip_norm: 0.5, noise_multiplier: 0.5}", "stop.epsilon=1.0")
    with pytest.raises(ConfigError, match=r"stop\.epsilon"):
        build(cfg)


def test_the_cli_refuses_an_unaffordable_budget_with_exit_2_and_one_line(tiny_config, glue_dir, tmp_path):
    from typer.testing import CliRunner

    from fedlora.cli import app
    from tests.conftest import REPO

    args = ["run", str(REPO / "configs" / "tiny.yaml"), "--set", f"task.data_dir={glue_dir}"]
    args += ["--set", f"output.dir={tmp_path}", "--set", "privacy={clip_norm: 0.5, noise_multiplier: 0.1}"]
    args += ["--set", "stop.epsilon=1.0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "stop.epsilon" in result.output and len(result.output.strip().splitlines()) == 1


def test_client_side_noise_is_on_every_tensor_the_server_receives_over_the_wire(tiny_config, monkeypatch):
    """The real Flower ClientApp answers over a scripted Grid; every reply on the wire is noised."""
    pytest.importorskip("flwr")
    from types import SimpleNamespace

    from flwr.supercore.task_identity import TaskIdentity

    from fedlora.flower import client_app
    from fedlora.flower.codec import ADAPTER, JOB, JobHeader, adapter_from_record, decode_reply
    from fedlora.flower.spec import ClientSpec
    from fedlora.flower.transport import FlowerTransport
    from fedlora.privacy.client import ClientNoise, privatize
    from fedlora.training.local import train_local
    from tests.flower.test_transport import ScriptedGrid

    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)
    sigma, clip = 0.7, 0.05
    cfg = tiny_config(
        THREADS, "stop.versions=2", f"privacy={{clip_norm: {clip}, noise_multiplier: {sigma}, where: client}}"
    )
    components = build(cfg)
    wire = []

    def answer(msg):
        header = JobHeader.from_record(msg.content.config_records[JOB])
        start = adapter_from_record(msg.content.array_records[ADAPTER], header.alphas)
        reply = client_app.train(msg, SimpleNamespace(node_config={"partition-id": header.client}))
        wire.append((header, start, decode_reply(reply.content).adapter))
        return reply

    transport = FlowerTransport(ClientSpec.of(cfg).to_text(), cfg.clients.count, poll_s=0.0, base=components.base)
    transport.attach(ScriptedGrid(cfg.clients.count, answer))
    server = run(components, transport)
    assert server.version == 2 and wire
    quiet = dataclasses.replace(components.spec, privacy=None)
    residuals = []
    for header, start, sent in wire:
        clean, _ = train_local(
            components.prep.host,
            start,
            components.prep.train,
            components.prep.partitions[header.client],
            header.steps,
            quiet,
            client=header.client,
            client_job=header.client_job,
            trains=header.trains,
            start_version=header.start_version,
        )
        clipped, _ = privatize(clean, start, header.trains, ClientNoise(clip, 0.0, cfg.seed), 0, 0)
        unnoised, noised = clean.tensors(), sent.tensors()
        for key, t in noised.items():
            assert not torch.equal(t, unnoised[key]), f"{key} left client {header.client} unnoised"
        residuals += [(t.double() - clipped.tensors()[k].double()).flatten() for k, t in noised.items()]
    r = torch.cat(residuals)
    assert float(r.std()) == pytest.approx(sigma * clip, rel=0.05)
    assert server.summary()["privacy"]["where"] == "client"


@pytest.mark.slow
def test_flower_simulation_gives_the_in_process_numbers_with_client_noise(tiny_config, tmp_path):
    pytest.importorskip("flwr")
    overrides = (*ASYNC_HETERO, "stop.versions=3", "privacy={clip_norm: 0.5, noise_multiplier: 0.8, where: client}")
    inproc = run_experiment(tiny_config(*overrides), out=tmp_path / "inprocess")
    flower = run_experiment(
        tiny_config(*overrides, "transport={name: flower_simulation, workers: 2}"), out=tmp_path / "flower"
    )
    assert deterministic_view(flower) == deterministic_view(inproc)
    assert flower["privacy"]["epsilon"] is not None
