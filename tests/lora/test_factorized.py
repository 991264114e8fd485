"""The factored product-sum math against dense float64 references."""

import pytest
import torch

from fedlora.lora.factorized import (
    factors_from_svd,
    frobenius_sq_factored,
    frobenius_sq_sum,
    orthonormal_completion,
    randomized_svd_factored,
    svd_dense,
    svd_factored,
    weighted_product_sum_factors,
)

F64 = torch.float64


def random_terms(ranks, d_out, d_in, seed=0, coefs=None):
    g = torch.Generator().manual_seed(seed)
    coefs = coefs or [float(torch.randn(1, generator=g)) for _ in ranks]
    return [
        (c, torch.randn(d_out, r, generator=g, dtype=F64), torch.randn(r, d_in, generator=g, dtype=F64))
        for c, r in zip(coefs, ranks, strict=True)
    ]


def dense(terms):
    return sum(c * B @ A for c, B, A in terms)


def test_factors_reproduce_the_weighted_sum_exactly():
    terms = random_terms([2, 5, 3, 1], d_out=17, d_in=9, coefs=[0.5, -1.25, 2.0, 0.1])
    Q_B, core, Q_A = weighted_product_sum_factors(terms)
    # sum r_i = 11: below d_out = 17 (Q_B keeps 11 columns), above d_in = 9 (Q_A is capped by the width)
    assert Q_B.shape == (17, 11) and core.shape == (11, 9) and Q_A.shape == (9, 9)
    torch.testing.assert_close(Q_B @ core @ Q_A.T, dense(terms), rtol=0, atol=1e-10)
    torch.testing.assert_close(Q_B.T @ Q_B, torch.eye(11, dtype=F64), rtol=0, atol=1e-12)


def test_exact_factored_svd_equals_the_dense_svd():
    terms = random_terms([3, 4, 2], d_out=20, d_in=13, seed=1)
    M = dense(terms)
    svd = svd_factored(terms)
    ref = torch.linalg.svdvals(M)
    torch.testing.assert_close(svd.S, ref[: svd.S.numel()], rtol=0, atol=1e-10)
    assert svd.total_energy == pytest.approx(float(M.square().sum()), rel=1e-12)
    for r in (1, 4, 9):
        t = svd.truncated(r)
        U, S, Vh = torch.linalg.svd(M)
        torch.testing.assert_close(
            t.U @ torch.diag(t.S) @ t.Vh, U[:, :r] @ torch.diag(S[:r]) @ Vh[:r], atol=1e-10, rtol=0
        )
        assert svd.energy_lost(r) == pytest.approx(float(S[r:].square().sum() / S.square().sum()), abs=1e-12)


@pytest.mark.parametrize("spectrum", ["decaying", "flat"])
def test_randomized_svd_is_near_optimal(spectrum):
    # 60 clients of rank 8 on a 64 x 48 layer: sum r_i = 480 far exceeds the width (the regime it is for)
    d_out, d_in, rank = 64, 48, 8
    coefs = [0.9**i if spectrum == "decaying" else 1.0 for i in range(60)]
    terms = random_terms([8] * 60, d_out, d_in, seed=2, coefs=coefs)
    if spectrum == "decaying":  # a clear low-rank signal plus small noise: the usual shape of averaged updates
        g = torch.Generator().manual_seed(3)
        signal = (torch.randn(d_out, 6, generator=g, dtype=F64), torch.randn(6, d_in, generator=g, dtype=F64))
        terms = [(c * 0.05, B, A) for c, B, A in terms] + [(10.0, *signal)]
    M = dense(terms)
    optimum = float(torch.linalg.svdvals(M)[rank:].square().sum())
    approx = randomized_svd_factored(terms, rank, torch.Generator().manual_seed(0), oversample=10, power_iters=2)
    err = float((M - approx.U @ torch.diag(approx.S) @ approx.Vh).square().sum())
    assert err >= optimum * (1 - 1e-9)
    assert err <= optimum * 1.01  # within 1% of the Eckart-Young optimum
    exact = svd_factored(terms)
    assert approx.estimated and not exact.estimated
    assert approx.energy_lost(rank) == pytest.approx(exact.energy_lost(rank), rel=0.1, abs=1e-3)
    torch.testing.assert_close(approx.U.T @ approx.U, torch.eye(rank, dtype=F64), atol=1e-10, rtol=0)


def test_power_iterations_matter_on_a_flat_spectrum():
    terms = random_terms([8] * 60, 64, 48, seed=4, coefs=[1.0] * 60)
    M = dense(terms)
    optimum = float(torch.linalg.svdvals(M)[8:].square().sum())

    def err(q):
        s = randomized_svd_factored(terms, 8, torch.Generator().manual_seed(0), oversample=2, power_iters=q)
        return float((M - s.U @ torch.diag(s.S) @ s.Vh).square().sum())

    assert err(3) < err(0)
    assert err(3) <= optimum * 1.05


def test_frobenius_norms_without_dense_products():
    terms = random_terms([2, 3], 9, 6, seed=5)
    M = dense(terms)
    assert frobenius_sq_sum(terms) == pytest.approx(float(M.square().sum()), rel=1e-12)
    _, B, A = terms[0]
    assert frobenius_sq_factored(B, A) == pytest.approx(float((B @ A).square().sum()), rel=1e-12)


def test_orthonormal_completion_is_orthogonal_and_nested():
    basis = torch.linalg.qr(torch.randn(10, 3, dtype=F64))[0]
    extra = orthonormal_completion(basis, 4, torch.Generator().manual_seed(7))
    both = torch.cat([basis, extra], dim=1)
    torch.testing.assert_close(both.T @ both, torch.eye(7, dtype=F64), atol=1e-12, rtol=0)
    fewer = orthonormal_completion(basis, 2, torch.Generator().manual_seed(7))
    torch.testing.assert_close(fewer, extra[:, :2], atol=1e-12, rtol=0)


@pytest.mark.parametrize("sigma", ["A", "B", "split"])
def test_factors_from_svd_place_sigma_and_keep_the_product(sigma):
    terms = random_terms([2, 3], 8, 6, seed=6)
    M = dense(terms)
    svd = svd_dense(M)
    B, A = factors_from_svd(svd, 4, scaling=0.5, sigma=sigma, completion=torch.Generator().manual_seed(0))
    assert B.shape == (8, 4) and A.shape == (4, 6)
    U, S, Vh = torch.linalg.svd(M)
    torch.testing.assert_close(0.5 * B @ A, U[:, :4] @ torch.diag(S[:4]) @ Vh[:4], atol=1e-10, rtol=0)
    if sigma == "B":
        torch.testing.assert_close(A @ A.T, torch.eye(4, dtype=F64), atol=1e-10, rtol=0)
    if sigma == "A":
        torch.testing.assert_close(B.T @ B, torch.eye(4, dtype=F64), atol=1e-10, rtol=0)
    if sigma == "split":
        torch.testing.assert_close(B.norm(dim=0), A.norm(dim=1), atol=1e-10, rtol=0)


@pytest.mark.parametrize("sigma", ["A", "B", "split"])
def test_zero_update_gets_a_usable_orthonormal_A(sigma):
    zero = [(1.0, torch.zeros(8, 3, dtype=F64), torch.randn(3, 6, dtype=F64))]
    B, A = factors_from_svd(svd_factored(zero), 4, 1.0, sigma, torch.Generator().manual_seed(0))
    assert torch.count_nonzero(B) == 0
    torch.testing.assert_close(A @ A.T, torch.eye(4, dtype=F64), atol=1e-12, rtol=0)  # full row rank, never zero


def test_rank_deficient_update_is_completed_orthogonally():
    # a rank-2 update asked for at rank 5 (sigma on A would leave 3 zero rows): completed with fresh directions
    terms = random_terms([2], 9, 7, seed=8)
    B, A = factors_from_svd(svd_factored(terms), 5, 1.0, "A", torch.Generator().manual_seed(0))
    torch.testing.assert_close(B @ A, dense(terms), atol=1e-10, rtol=0)
    assert torch.linalg.matrix_rank(A) == 5
    assert float((A[2:] @ A[:2].T).abs().max()) < 1e-10  # new directions are orthogonal to the kept ones


def test_factors_from_svd_rejects_unknown_sigma():
    with pytest.raises(ValueError, match="sigma"):
        factors_from_svd(svd_factored(random_terms([1], 3, 3)), 1, 1.0, "C", torch.Generator())


def test_float32_adapters_are_sketched_in_float32_with_the_same_accuracy():
    terms64 = random_terms([8] * 40, 64, 48, seed=9, coefs=[1.0] * 40)
    terms32 = [(c, B.float(), A.float()) for c, B, A in terms64]
    M = dense(terms64)
    optimum = float(torch.linalg.svdvals(M)[8:].square().sum())
    errs = {}
    for name, terms in (("f64", terms64), ("f32", terms32)):
        s = randomized_svd_factored(terms, 8, torch.Generator().manual_seed(0))
        assert s.U.dtype == F64  # the small SVD and the result are float64 either way
        errs[name] = float((M - s.U @ torch.diag(s.S) @ s.Vh).square().sum())
    assert errs["f32"] <= optimum * 1.02
    assert errs["f32"] == pytest.approx(errs["f64"], rel=1e-4)  # float32 rounding is far below the sketch error
