"""RoLoRA: one factor per version, alternating, so that averaging the factors is the exact average."""

import pytest
import torch

from fedlora import get_aggregator
from fedlora.lora.adapter import Adapter, LoRAFactors
from tests.aggregators.common import SHAPES, dense_sum, random_adapter


def moved(start: Adapter, trains: str, seed: int) -> Adapter:
    """What a client sends back after training `trains` only: the other factor as it was sent."""
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for name, f in start.layers.items():
        A = torch.randn(f.A.shape, generator=g, dtype=torch.float64) if "A" in trains else f.A
        B = torch.randn(f.B.shape, generator=g, dtype=torch.float64) if "B" in trains else f.B
        layers[name] = LoRAFactors(A, B, f.alpha)
    return Adapter(layers=layers, extras={k: v + seed for k, v in start.extras.items()})


def test_versions_alternate_between_the_factors_B_first():
    agg = get_aggregator("rolora", rank=4)
    assert [agg.trains(v) for v in range(4)] == ["B", "A", "B", "A"]
    assert [get_aggregator("rolora", rank=4, first="A").trains(v) for v in range(3)] == ["A", "B", "A"]


@pytest.mark.parametrize("version", [0, 1])
def test_averaging_the_trained_factor_is_exact_in_float64(version):
    agg = get_aggregator("rolora", rank=3)
    start = random_adapter(3, 8.0, seed=0)
    trains = agg.trains(version)
    terms = [(w, moved(start, trains, seed=k + 1)) for k, w in enumerate((0.5, 0.25, 0.25))]
    out = agg.combine(terms)
    for name in SHAPES:
        torch.testing.assert_close(out.delta(name, torch.float64), dense_sum(terms, name), rtol=0, atol=1e-12)
    assert agg.last_diagnostics["rel_error"] < 1e-12
    # both factors trained (FedIT's case): the same average is biased
    both = [(w, moved(start, "AB", seed=k + 1)) for k, w in enumerate((0.5, 0.25, 0.25))]
    agg.combine(both)
    assert agg.last_diagnostics["rel_error"] > 0.05


def test_a_client_uploads_only_the_factor_it_trained():
    agg = get_aggregator("rolora", rank=2)
    start = random_adapter(2, 8.0, seed=0)  # float64 factors, a 2x3 float64 head
    head = 6 * 8
    A_bytes = sum(f.A.numel() for f in start.layers.values()) * 8
    B_bytes = sum(f.B.numel() for f in start.layers.values()) * 8
    assert agg.upload_nbytes(start, "B") == B_bytes + head
    assert agg.upload_nbytes(start, "A") == A_bytes + head
    assert agg.download_nbytes(start, 0, 1) == start.nbytes == A_bytes + B_bytes + head


@pytest.mark.slow
def test_a_rolora_run_trains_one_factor_per_version_so_every_average_is_exact(tiny_config, tmp_path):
    from fedlora.experiment import run_experiment
    from fedlora.io.rundir import read_events

    cfg = tiny_config("aggregator.name=rolora", "stop.versions=3", "training.local_steps=2", "training.threads=1")
    summary = run_experiment(cfg, out=tmp_path / "run")
    events = read_events(tmp_path / "run" / "events.jsonl")
    aggregations = [e for e in events if e["event"] == "aggregation"]
    # float32 factors: exact up to rounding, where FedIT's average of two trained factors is off by far more
    assert len(aggregations) == 3 and all(e["rel_error"] < 1e-5 for e in aggregations)
    down = {e["job"]: e["bytes"] for e in events if e["event"] == "dispatch"}
    up = {e["job"]: e["bytes"] for e in events if e["event"] == "arrival"}
    assert up and all(up[j] < down[j] for j in up)  # one factor up, both down
    assert summary["totals"]["bytes_up"] < summary["totals"]["bytes_down"]
