"""FedEx-LoRA: FedIT's averages plus the residual folded into the frozen base, so the global model is exact."""

import pytest
import torch

from fedlora import get_aggregator
from fedlora.engine.frozen_base import FrozenBase
from fedlora.errors import ConfigError
from tests.aggregators.common import SHAPES, dense_sum, random_adapter

F64 = torch.float64


def merged_weights(W0, base, adapter):
    """The effective weight of every layer: frozen base (original + folds) plus the global adapter's update."""
    return {n: W0[n] + base.current.get(n, 0.0) + adapter.delta(n, F64) for n in SHAPES}


@pytest.mark.parametrize(
    "weights",
    [(0.5, 0.3, 0.2), (1.0, 0.4, -0.4)],  # an average, and FedBuff's x + w (x_i - x_start) with a negative term
)
def test_the_merged_model_is_the_exact_weighted_sum_of_the_clients_updates_in_float64(weights):
    g = torch.Generator().manual_seed(0)
    W0 = {n: torch.randn(d_out, d_in, generator=g, dtype=F64) for n, (d_out, d_in) in SHAPES.items()}
    terms = [(w, random_adapter(3, 8.0, seed=i + 1)) for i, w in enumerate(weights)]
    agg, base = get_aggregator("fedex", rank=3), FrozenBase()
    combined = agg.combine(terms)
    glob = agg.after_combine(combined, terms, version=1, base=base)
    merged = merged_weights(W0, base, glob)
    for name in SHAPES:
        torch.testing.assert_close(merged[name], W0[name] + dense_sum(terms, name), rtol=0, atol=1e-12)
        # clients continue from FedIT's averages of the factors
        A = sum(w * ad.layers[name].A for w, ad in terms)
        torch.testing.assert_close(glob.layers[name].A, A, rtol=0, atol=1e-12)
    assert base.version == 1 and glob is combined
    assert agg.last_diagnostics["rel_error"] == 0.0 and agg.last_diagnostics["residual"] > 0.05


def test_folds_accumulate_and_the_model_stays_exact_over_versions():
    g = torch.Generator().manual_seed(1)
    W0 = {n: torch.randn(d_out, d_in, generator=g, dtype=F64) for n, (d_out, d_in) in SHAPES.items()}
    agg, base = get_aggregator("fedex", rank=2), FrozenBase()
    for version in range(1, 4):
        terms = [(1 / 3, random_adapter(2, 4.0, seed=10 * version + k)) for k in range(3)]
        glob = agg.after_combine(agg.combine(terms), terms, version, base)
        # the base as the clients trained on it, plus the exact average of their effective updates
        for n in SHAPES:
            target = W0[n] + base.at(version - 1).get(n, 0.0) + dense_sum(terms, n)
            torch.testing.assert_close(merged_weights(W0, base, glob)[n], target, rtol=0, atol=1e-11)
    assert base.version == 3


def test_fedex_refuses_mixed_ranks_as_fedit_does():
    agg = get_aggregator("fedex", rank=4)
    assert not agg.supports_mixed_ranks
    with pytest.raises(ConfigError, match="equal ranks"):
        agg.combine([(0.5, random_adapter(2, 8.0, 1)), (0.5, random_adapter(4, 8.0, 2))])


# ----- end to end on the tiny model ---------------------------------------------------------------------------
ASYNC = ["aggregator.name=fedex", "clients.count=3", "clients.speeds={name: list, values: [1.0, 2.0, 0.5]}"]
ASYNC += ["schedule={name: fedbuff, buffer_size: 2}", "stop.versions=4", "training.local_steps=2"]
ASYNC += ["task.dev_limit=32", "training.threads=1"]


@pytest.mark.slow
def test_an_async_fedex_run_folds_every_version_and_resumes_exactly(tiny_config, tmp_path):
    from fedlora.experiment import deterministic_view, run_experiment
    from fedlora.io.rundir import read_events
    from fedlora.io.state import load_state
    from tests.conftest import run_killed

    cfg = tiny_config(*ASYNC)
    straight = run_experiment(cfg, out=tmp_path / "straight")
    aggregations = [e for e in read_events(tmp_path / "straight" / "events.jsonl") if e["event"] == "aggregation"]
    assert len(aggregations) == 4 and all(e["rel_error"] == 0.0 and e["residual"] > 0 for e in aggregations)
    assert (tmp_path / "straight" / "merged_base_delta.safetensors").is_file()

    run_killed(cfg, tmp_path / "resumed", at_version=3)
    state = load_state(tmp_path / "resumed" / "checkpoints" / "checkpoint")
    kept = {int(v) for v in state["base"]["snapshots"]}
    # each job in flight trains on the base as it was at its dispatch: those snapshots are checkpointed
    assert state["in_flight"] and {j.base_version for j in state["in_flight"].values()} <= kept
    assert state["base"]["version"] == state["version"]  # one fold per version
    resumed = run_experiment(cfg, out=tmp_path / "resumed", resume=True)
    assert deterministic_view(resumed) == deterministic_view(straight)
