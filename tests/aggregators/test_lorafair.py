"""LoRA-FAIR: FedIT's averages with B corrected toward the exact sum, checked against a dense float64 solve."""

import pytest
import torch

from fedlora import get_aggregator
from fedlora.errors import ConfigError
from tests.aggregators.common import SHAPES, dense_sum, random_adapter

F64 = torch.float64


def terms_of(weights=(0.5, 0.3, 0.2), rank=3, alpha=8.0):
    return [(w, random_adapter(rank, alpha, seed=k + 1)) for k, w in enumerate(weights)]


@pytest.mark.parametrize("ridge", [0.0, 1e-3, 0.5])
def test_the_correction_is_the_dense_ridge_solution(ridge):
    terms = terms_of()
    agg = get_aggregator("lorafair", rank=3, ridge=ridge)
    out = agg.combine(terms)
    fedit = get_aggregator("fedit", rank=3).combine(terms)
    for name in SHAPES:
        A, B_avg = fedit.layers[name].A.to(F64), fedit.layers[name].B.to(F64)
        s = fedit.layers[name].scaling
        M = dense_sum(terms, name)
        gram = A @ A.T
        lam = ridge * float(torch.trace(gram)) / 3
        # dB minimises ||M/s - (B_avg + dB) A||^2 + lam ||dB||^2: the normal equations, solved densely
        dB = torch.linalg.solve(gram + lam * torch.eye(3, dtype=F64), ((M / s - B_avg @ A) @ A.T).T).T
        torch.testing.assert_close(out.layers[name].B.to(F64), B_avg + dB, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(out.layers[name].A, fedit.layers[name].A, rtol=0, atol=0)  # A is FedIT's


def test_without_ridge_the_error_is_orthogonal_to_A_and_smaller_than_fedits():
    terms = terms_of(weights=(1.0, 0.4, -0.4))  # FedBuff's x + w (x_i - x_start): negative weights too
    agg = get_aggregator("lorafair", rank=3, ridge=0.0)
    out = agg.combine(terms)
    fedit = get_aggregator("fedit", rank=3).combine(terms)
    for name in SHAPES:
        M = dense_sum(terms, name)
        err = M - out.delta(name, F64)
        torch.testing.assert_close(err @ out.layers[name].A.T.to(F64), torch.zeros(SHAPES[name][0], 3, dtype=F64))
        assert torch.linalg.norm(err) < torch.linalg.norm(M - fedit.delta(name, F64))
    d = agg.last_diagnostics
    assert d["rel_error"] < d["rel_error_uncorrected"]


def test_lorafair_refuses_mixed_ranks():
    with pytest.raises(ConfigError, match="equal ranks"):
        get_aggregator("lorafair", rank=4).combine([(0.5, random_adapter(2, 8.0, 1)), (0.5, random_adapter(4, 8.0, 2))])


@pytest.mark.slow
def test_a_lorafair_run_logs_a_corrected_error_below_fedits(tiny_config, tmp_path):
    from fedlora.experiment import run_experiment
    from fedlora.io.rundir import read_events

    cfg = tiny_config("aggregator.name=lorafair", "stop.versions=2", "training.local_steps=3", "training.threads=1")
    run_experiment(cfg, out=tmp_path / "run")
    aggregations = [e for e in read_events(tmp_path / "run" / "events.jsonl") if e["event"] == "aggregation"]
    assert len(aggregations) == 2
    assert all(e["rel_error"] <= e["rel_error_uncorrected"] for e in aggregations)
    assert aggregations[-1]["rel_error"] < aggregations[-1]["rel_error_uncorrected"]
