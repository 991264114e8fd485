"""The server's update checks on their own: what a client cannot get past, whatever it sends."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fedlora.engine.validation import check_declared, max_reply_nbytes, validate_update
from fedlora.errors import UpdateRejected
from fedlora.jobs import Job
from fedlora.lora.adapter import Adapter

F64 = torch.float64


def _adapter(A: torch.Tensor, B: torch.Tensor, alpha: float = 2.0) -> Adapter:
    return Adapter.from_factors({"w": (A, B)}, alpha=alpha, extras={"head": torch.zeros(3, dtype=F64)})


def _job(start: Adapter, rank: int = 2) -> Job:
    return Job(0, 0, 0, rank, 2.0, 0, start, 1, 0.0, 1.0, 0, 0)


START = _adapter(torch.zeros(2, 4, dtype=F64), torch.zeros(5, 2, dtype=F64))


def _reason(adapter: Adapter, max_norm: float | None = None) -> str | None:
    try:
        validate_update(_job(START), adapter, START, max_norm)
    except UpdateRejected as exc:
        return exc.reason
    return None


def test_finite_factors_whose_product_overflows_are_over_the_bound():
    # the product is inf - inf = NaN on BLAS kernels that round each term, inf on fused multiply-add ones (the
    # exact product is finite there); either way it is not within the bound
    A = torch.zeros(2, 4, dtype=F64)
    A[0, 0], A[1, 0] = 1e10, -1e10
    B = torch.full((5, 2), 1e300, dtype=F64)
    assert not torch.isfinite((B @ A)[0, 0])
    assert _reason(_adapter(A, B), max_norm=1.0) == "over_norm"
    assert _reason(_adapter(torch.zeros(2, 4, dtype=F64), torch.zeros(5, 2, dtype=F64)), max_norm=1.0) is None


def test_a_norm_that_is_nan_is_over_the_bound(monkeypatch):
    # sqrt(NaN) > bound is False, so a NaN norm slipped through the bound before; the NaN is made here rather
    # than by overflow, which gives NaN or inf depending on the BLAS kernel (the test above)
    from fedlora.lora.adapter import LoRAFactors

    monkeypatch.setattr(LoRAFactors, "delta", lambda self, dtype=None: torch.full((5, 4), float("nan"), dtype=F64))
    assert _reason(_adapter(torch.ones(2, 4, dtype=F64), torch.ones(5, 2, dtype=F64)), max_norm=1.0) == "over_norm"


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), 1e30, -8.0, 0.0, 2.0000001])
def test_the_alpha_is_the_jobs_not_the_clients(alpha):
    assert _reason(_adapter(START.layers["w"].A, START.layers["w"].B, alpha=alpha)) == "wrong_alpha"


def test_dtypes_are_the_jobs():
    assert _reason(START.map(lambda t: t.float())) == "wrong_dtype"


def _declared(adapter: Adapter, **changes) -> dict:
    out = {
        k: (tuple(t.shape), str(t.dtype).removeprefix("torch."), t.numel() * t.element_size() + 128)
        for k, t in adapter.tensors().items()
    }
    out.update(changes)
    return out


@pytest.mark.parametrize(
    "change,reason",
    [
        ({}, None),
        ({"lora.w.B": None}, "malformed"),  # an A without its B
        ({"lora.w.A": None}, "malformed"),
        ({"weights.w": ((2, 4), "float64", 64)}, "malformed"),
        ({"lora.v.A": ((2, 4), "float64", 64), "lora.v.B": ((5, 2), "float64", 80)}, "wrong_layers"),
        ({"lora.w.A": ((2, 4), "float32", 32)}, "wrong_dtype"),
        ({"lora.w.A": ((3, 4), "float64", 96), "lora.w.B": ((5, 3), "float64", 120)}, "over_rank"),
        ({"lora.w.A": ((2, 6), "float64", 96)}, "wrong_shape"),
        ({"lora.w.A": ((1, 4), "float64", 32)}, "wrong_shape"),  # A and B disagree on the rank
        ({"extra.head": ((4,), "float64", 32)}, "wrong_shape"),
        ({"lora.w.A": ((2, 4, 1), "float64", 64)}, "wrong_shape"),
        ({"lora.w.A": ((2, 4), "float64", 10**6)}, "oversized"),  # bytes beyond what the shape holds
        ({"extra.head": ((3,), "float64", 10**9)}, "oversized"),  # more than the job's rank implies in all
    ],
)
def test_declared_arrays_are_checked_against_the_job_before_any_is_read(change, reason):
    declared = {k: v for k, v in _declared(START, **change).items() if v is not None}
    try:
        check_declared(_job(START), declared)
    except UpdateRejected as exc:
        assert exc.reason == reason, exc
    else:
        assert reason is None


def test_the_size_bound_follows_the_jobs_rank_not_the_adapter_sent():
    small = dataclasses.replace(_job(START), rank=2)
    large = dataclasses.replace(_job(START), rank=8)
    per_rank = (5 + 4) * 8  # one more rank: a B column and an A row of float64
    assert max_reply_nbytes(large) - max_reply_nbytes(small) == 6 * per_rank
