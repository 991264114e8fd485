"""Every aggregator with every schedule, end to end on the tiny model, clients at mixed ranks by speed tier."""

import json

import pytest
import torch
from safetensors.torch import load_file

from fedlora.aggregators import AGGREGATORS, get_aggregator
from fedlora.experiment import run_experiment
from fedlora.schedules import SCHEDULES

# a few seconds per run: 2 versions, 2 local steps, small dev slice; speeds spread so the tiers differ
FAST = [
    "stop.versions=2",
    "training.local_steps=2",
    "task.dev_limit=32",
    "clients.speeds={name: uniform, low: 0.5, high: 2.0}",
    "training.threads=1",  # on a shared 2-core machine, one thread per test process is ~10x faster
]


def ranks_for(aggregator: str) -> str:
    mixed = get_aggregator(aggregator, rank=4).supports_mixed_ranks
    return "clients.ranks={name: speed_tier}" if mixed else "clients.ranks={name: uniform}"


@pytest.mark.slow
@pytest.mark.parametrize("schedule", SCHEDULES.names())
@pytest.mark.parametrize("aggregator", AGGREGATORS.names())
def test_aggregator_runs_under_schedule(aggregator, schedule, tiny_config, tmp_path):
    cfg = tiny_config(f"aggregator.name={aggregator}", f"schedule={{name: {schedule}}}", ranks_for(aggregator), *FAST)
    summary = run_experiment(cfg, out=tmp_path / "run")
    assert summary["totals"]["versions"] == 2
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    aggregations = [e for e in events if e["event"] == "aggregation"]
    assert len(aggregations) == 2 and all("rel_error" in e for e in aggregations)
    ranks = {e["client"]: e["rank"] for e in events if e["event"] == "dispatch"}
    if get_aggregator(aggregator, rank=4).supports_mixed_ranks:
        assert len(set(ranks.values())) > 1
    for e in events:
        if e["event"] == "evaluation":
            assert 0.0 <= e["accuracy"] <= 1.0


def test_bytes_follow_each_clients_rank(tiny_config, tmp_path):
    cfg = tiny_config("aggregator.name=hlora", "clients.ranks={name: list, values: [1, 2, 4, 4]}", *FAST)
    summary = run_experiment(cfg, out=tmp_path / "run")
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    per_rank = {}
    for e in events:
        if e["event"] == "dispatch":
            per_rank.setdefault(e["rank"], set()).add(e["bytes"])
    assert all(len(v) == 1 for v in per_rank.values())  # every dispatch of a rank costs the same
    b1, b2, b4 = (per_rank[r].pop() for r in (1, 2, 4))
    lora_per_rank = b2 - b1
    assert lora_per_rank > 0 and b4 - b2 == 2 * lora_per_rank  # linear in the rank: r (d_in + d_out) floats
    down = {e["job"]: e["bytes"] for e in events if e["event"] == "dispatch"}
    up = {e["job"]: e["bytes"] for e in events if e["event"] == "arrival"}
    assert up and all(up[job] == down[job] for job in up)  # a client answers at its own rank
    assert summary["totals"]["bytes_up"] == sum(up.values())
    assert summary["totals"]["bytes_down"] == sum(down.values())


def test_ffa_training_leaves_A_at_the_shared_init(tiny_config, tmp_path):
    cfg = tiny_config("aggregator.name=ffa", "clients.ranks={name: speed_tier}", *FAST)
    run_experiment(cfg, out=tmp_path / "run")
    saved = load_file(str(tmp_path / "run" / "global_adapter.safetensors"))
    agg = get_aggregator("ffa", rank=cfg.lora.rank)
    for key, tensor in saved.items():
        if key.endswith(".A"):
            layer = key[len("lora.") : -len(".A")]
            torch.testing.assert_close(tensor, agg.shared_A(layer, tensor.shape[1]))
        if key.endswith(".B"):
            assert torch.count_nonzero(tensor) > 0  # B trained
