"""fedlora on Flower's simulation engine (Ray, 2 parallel workers) gives the in-process numbers exactly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fedlora.experiment import deterministic_view, run_experiment
from fedlora.io.rundir import read_events
from tests.conftest import ASYNC_HETERO as ASYNC_CONFIG

pytest.importorskip("flwr")

ASYNC_HETERO = [*ASYNC_CONFIG, "stop.versions=3"]


def _strip_real(events):
    return [{k: v for k, v in e.items() if k != "real_s"} for e in events]


@pytest.mark.slow
def test_flower_simulation_with_two_workers_equals_the_in_process_run(tiny_config, tmp_path):
    inproc = run_experiment(tiny_config(*ASYNC_HETERO), out=tmp_path / "inprocess")
    flower = run_experiment(
        tiny_config(*ASYNC_HETERO, "transport={name: flower_simulation, workers: 2}"), out=tmp_path / "flower"
    )
    assert deterministic_view(flower) == deterministic_view(inproc)
    events = read_events(tmp_path / "flower" / "events.jsonl")
    assert _strip_real(events) == _strip_real(read_events(tmp_path / "inprocess" / "events.jsonl"))
    # the comparison is not vacuous: mixed ranks, stale async arrivals, metrics that move
    assert len({e["rank"] for e in events if e["event"] == "dispatch"}) > 1
    assert flower["totals"]["staleness_max"] > 0 and flower["totals"]["versions"] == 3
    losses = [p["metrics"]["loss"] for p in flower["history"]]
    assert len(set(losses)) == len(losses)


def test_adapters_cross_the_wire_bit_exact_in_the_safetensors_layout():
    from safetensors.torch import load, save

    from fedlora.flower.codec import JobHeader, decode_reply, reply_content
    from fedlora.lora.adapter import Adapter

    g = torch.Generator().manual_seed(0)
    adapter = Adapter.from_factors(
        {"l0": (torch.randn(2, 5, generator=g), torch.randn(3, 2, generator=g))},
        alpha={"l0": 4.0},
        extras={"head.weight": torch.randn(2, 3, generator=g)},
    )
    header = JobHeader(job_id=7, client=1, client_job=2, rank=2, start_version=3, steps=4, alphas=adapter.alphas())
    reply = decode_reply(
        reply_content(header, adapter, num_samples=60, samples_trained=64, metrics={"train_loss": 0.5})
    )
    assert reply.header == header and reply.adapter.allclose(adapter)
    assert (reply.num_samples, reply.samples_trained, reply.metrics) == (60, 64, {"train_loss": 0.5})
    record_keys = set(load(save(adapter.tensors())))  # the ArrayRecord keys are the safetensors keys
    assert record_keys == {"lora.l0.A", "lora.l0.B", "extra.head.weight"}


def test_the_core_never_imports_flower():
    code = "import sys, fedlora.cli, fedlora.experiment, fedlora.engine.server; print('flwr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_missing_flower_install_says_what_to_install(monkeypatch):
    from fedlora.flower import FlowerMissing, require_flower

    monkeypatch.setitem(sys.modules, "flwr", None)  # import flwr now raises ImportError
    with pytest.raises(FlowerMissing, match=r"pip install \"fedlora\[flower\]\""):
        require_flower()


@pytest.mark.slow
def test_on_the_wall_clock_async_updates_follow_real_arrival_and_the_adapter_loads_in_peft(tiny_config, tmp_path):
    from peft import PeftModel

    from fedlora.models.loading import load_classifier

    cfg = tiny_config(
        *ASYNC_HETERO,
        "schedule={name: fedasync}",
        "stop.versions=5",
        "transport={name: flower_simulation, clock: wall}",
    )
    summary = run_experiment(cfg, out=tmp_path / "wall")
    assert summary["stopped_by"] == "versions" and summary["totals"]["versions"] == 5
    events = read_events(tmp_path / "wall" / "events.jsonl")
    times = [e["virtual_s"] for e in events]
    assert times == sorted(times)  # real seconds since the start
    dispatched = {e["job"]: e for e in events if e["event"] == "dispatch"}
    arrivals = [e for e in events if e["event"] == "arrival"]
    assert all(e["virtual_s"] >= dispatched[e["job"]]["virtual_s"] for e in arrivals)
    # the cost model's predicted arrival times are not what the run used
    assert any(e["virtual_s"] != dispatched[e["job"]]["arrival_virtual_s"] for e in arrivals)
    base = load_classifier("minilm", 2, random_init=cfg.model.random_init)
    PeftModel.from_pretrained(base, tmp_path / "wall" / "adapter")
