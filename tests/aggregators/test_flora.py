"""FLoRA: exact stacking, merged into the base weights every version, resumable."""

import json

import pytest
import torch

from fedlora import get_aggregator
from fedlora.errors import ConfigError
from fedlora.experiment import deterministic_view, run_experiment
from fedlora.lora.init import fresh_adapter
from tests.aggregators.common import SHAPES, dense_sum, mixed_terms, random_adapter
from tests.conftest import run_killed


def test_flora_stacking_is_exact_and_the_rank_grows():
    terms = mixed_terms()
    agg = get_aggregator("flora", rank=4)
    out = agg.combine(terms)
    for name in SHAPES:
        assert out.layers[name].rank == 2 + 3 + 5 + 1
        torch.testing.assert_close(out.delta(name), dense_sum(terms, name), rtol=0, atol=1e-10)
    assert agg.last_diagnostics == {"rel_error": 0.0, "stacked_rank": 11.0}
    with pytest.raises(ConfigError, match="merged"):
        agg.distribute(out, rank=2, alpha=1.0)  # a stacked global must be merged before clients restart


def test_flora_download_includes_the_stacked_updates_a_client_missed():
    shapes = {"wide": (64, 48)}
    agg = get_aggregator("flora", rank=4)
    for v in range(3):
        agg.combine([(0.5, random_adapter(2, 4.0, seed=v, shapes=shapes))] * 2)
    stacked = agg.stacked_nbytes[0]
    assert stacked == 4 * (64 + 48) * 8  # two rank-2 terms stacked to rank 4, float64 factors
    start = agg.distribute(fresh_adapter(shapes, 4, 8.0, torch.Generator().manual_seed(0)), rank=2, alpha=8.0)
    assert agg.download_nbytes(start, since_version=3, version=3) == start.nbytes  # up to date: the adapter only
    assert agg.download_nbytes(start, since_version=1, version=3) == start.nbytes + 2 * stacked
    # a client that missed many versions downloads the dense delta instead (64 x 48 float32)
    agg.stacked_nbytes += [stacked] * 20
    assert agg.download_nbytes(start, since_version=0, version=23) == start.nbytes + 64 * 48 * 4


def test_flora_run_merges_into_the_base_and_resumes_exactly(tiny_config, tmp_path):
    overrides = ["aggregator.name=flora", "clients.ranks.name=speed_tier", "stop.versions=3", "training.local_steps=2"]
    overrides += ["training.threads=1", "task.dev_limit=32", "clients.speeds={name: uniform, low: 0.5, high: 2.0}"]
    straight = run_experiment(tiny_config(*overrides), out=tmp_path / "straight")
    events = [json.loads(x) for x in (tmp_path / "straight" / "events.jsonl").read_text().splitlines()]
    aggregations = [e for e in events if e["event"] == "aggregation"]
    assert len(aggregations) == 3 and all(e["stacked_rank"] > 0 for e in aggregations)
    # clients of rank r download their fresh rank-r adapter plus the stacked updates they missed
    dispatches = [e for e in events if e["event"] == "dispatch"]
    first, later = [e for e in dispatches if e["version"] == 0], [e for e in dispatches if e["version"] == 1]
    assert len({e["rank"] for e in first}) > 1
    assert all(e["bytes"] > min(f["bytes"] for f in first if f["rank"] == e["rank"]) for e in later)
    assert (tmp_path / "straight" / "merged_base_delta.safetensors").is_file()

    run_killed(tiny_config(*overrides), tmp_path / "resumed", at_version=2)
    resumed = run_experiment(tiny_config(*overrides), out=tmp_path / "resumed", resume=True)
    assert deterministic_view(resumed) == deterministic_view(straight)
