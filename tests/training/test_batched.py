"""Batched jobs (`transport.batch_jobs`): a batched job's result equals its sequential one within float
rounding, for every aggregator under fedavg and fedfa; batched runs are deterministic and resume exactly."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from fedlora.aggregators.base import AGGREGATORS
from fedlora.errors import ConfigError
from fedlora.experiment import build, deterministic_view, run_experiment
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.training import batched as batched_module
from fedlora.training.batched import BatchJob, train_batched, width_groups
from fedlora.training.local import train_local
from tests.conftest import run_killed

#: float32: relative Frobenius difference of every trained tensor after a job (measured: ~1e-7)
RTOL = 1e-5
FAST = ["training.threads=1", "clients.count=3", "schedule.per_round=3", "training.local_steps=2"]


def rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max(float((a[k].double() - b[k].double()).norm() / max(float(a[k].double().norm()), 1e-30)) for k in a)


def test_jobs_share_a_stack_only_with_jobs_of_a_similar_sequence_width():
    assert width_groups([64, 17, 16, 128, 30, 1, 65], bucket=16) == [[2, 5], [1, 4], [0], [6], [3]]
    assert width_groups([], bucket=16) == []
    assert width_groups([40, 40, 40], bucket=8) == [[0, 1, 2]]


@pytest.mark.parametrize("bucket", [batched_module.WIDTH_BUCKET, 1])
def test_a_batch_of_mixed_jobs_equals_the_jobs_trained_one_by_one(tiny_config, monkeypatch, bucket):
    """Mixed ranks, factors trained (AB, A, B), step counts and a LoRA dropout, in one batch; with bucket 1
    every job of a different width runs in a stack of its own."""
    monkeypatch.setattr(batched_module, "WIDTH_BUCKET", bucket)
    steps_grouped: list[list[list[int]]] = []
    real = batched_module.width_groups
    monkeypatch.setattr(
        batched_module, "width_groups", lambda w, b: steps_grouped.append(real(w, b)) or steps_grouped[-1]
    )
    # batches of 4 pairs up to 128 tokens: the jobs' batches differ in width
    cfg = tiny_config(
        *FAST,
        "clients.count=4",
        "lora.dropout=0.1",
        "training.max_grad_norm=0.5",
        "training.batch_size=4",
        "task.max_length=128",
    )
    c = build(cfg, step_seconds=1.0)
    host, data, parts, spec = c.prep.host, c.prep.train, c.prep.partitions, c.spec
    g = torch.Generator().manual_seed(0)
    jobs = []
    for client, (rank, trains) in enumerate([(2, "AB"), (4, "A"), (3, "B"), (1, "AB")]):
        start = c.initial
        layers = {
            n: LoRAFactors(f.A[:rank].clone(), torch.randn(f.B.shape[0], rank, generator=g) * 0.05, f.alpha)
            for n, f in start.layers.items()
        }
        jobs.append(BatchJob(Adapter(layers, start.extras), parts[client], 2 + client % 2, client, 1, trains, 0))
    batched = train_batched(host, jobs, data, spec)
    if bucket == 1:  # the case this parameter exists for: some step ran its jobs in several stacks
        assert any(len(groups) > 1 for groups in steps_grouped)
    for job, (adapter, metrics) in zip(jobs, batched, strict=True):
        alone, alone_metrics = train_local(
            host, job.adapter, data, job.indices, job.steps, spec, job.client, 1, job.trains
        )
        assert rel_diff(alone.tensors(), adapter.tensors()) <= RTOL
        assert metrics == pytest.approx(alone_metrics, rel=RTOL)
        frozen = {"A": "B", "B": "A"}.get(job.trains)
        for name, f in adapter.layers.items():  # the factor a job does not train is exactly as it was sent
            if frozen:
                assert torch.equal(getattr(f, frozen), getattr(job.adapter.layers[name], frozen))


def final_adapter(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "global_adapter.safetensors"))


@pytest.mark.parametrize("schedule", ["fedavg", "fedfa"])
@pytest.mark.parametrize("aggregator", sorted(AGGREGATORS.names()))
def test_batched_runs_equal_sequential_runs_for_every_aggregator(tiny_config, tmp_path, aggregator, schedule):
    sched = ["schedule={name: fedfa, window: 2}", "stop.versions=4"] if schedule == "fedfa" else ["stop.versions=2"]
    ranks = (
        ["clients.ranks={name: list, values: [4, 2, 3]}"] if AGGREGATORS.get(aggregator).supports_mixed_ranks else []
    )
    cfg = [*FAST, f"aggregator.name={aggregator}", *sched, *ranks]
    seq = run_experiment(tiny_config(*cfg), out=tmp_path / "seq")
    bat = run_experiment(tiny_config(*cfg, "transport.batch_jobs=auto"), out=tmp_path / "bat")
    assert rel_diff(final_adapter(tmp_path / "seq"), final_adapter(tmp_path / "bat")) <= RTOL * 10
    assert seq["totals"]["versions"] == bat["totals"]["versions"]
    for a, b in zip(seq["history"], bat["history"], strict=True):
        assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-4, abs=1e-4)


def test_batched_runs_are_deterministic_and_resume_exactly(tiny_config, tmp_path):
    cfg = tiny_config(*FAST, "aggregator.name=hlora", "stop.versions=3", "transport.batch_jobs=2")
    a = run_experiment(cfg, out=tmp_path / "a")
    b = run_experiment(cfg, out=tmp_path / "b")
    assert deterministic_view(a) == deterministic_view(b)
    assert torch.equal(
        torch.cat([t.flatten() for t in final_adapter(tmp_path / "a").values()]),
        torch.cat([t.flatten() for t in final_adapter(tmp_path / "b").values()]),
    )
    run_killed(cfg, tmp_path / "killed", at_version=2)
    resumed = run_experiment(cfg, out=tmp_path / "killed", resume=True)
    assert deterministic_view(resumed) == deterministic_view(a)


def test_batch_jobs_is_for_the_in_process_transport_only(tiny_config):
    # YAML reads a bare off/on as booleans
    assert tiny_config("transport.batch_jobs=off").transport.batch_jobs == "off"
    assert tiny_config("transport.batch_jobs=4").transport.batch_jobs == 4
    with pytest.raises(ConfigError, match="batch_jobs"):
        tiny_config("transport.name=flower_simulation", "transport.batch_jobs=auto")
