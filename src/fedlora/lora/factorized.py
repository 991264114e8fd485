"""Sums of low-rank products and their truncated SVD, computed in factored form.

A weighted combination of LoRA updates is M = sum_i c_i B_i A_i (c_i = w_i * alpha_i / r_i), with B_i of
shape d_out x r_i and A_i of shape r_i x d_in. With R = sum_i r_i, M = B_s A_s where B_s = [B_1 ... B_n]
(d_out x R) and A_s = [c_1 A_1; ...; c_n A_n] (R x d_in). Everything here works on (B_s, A_s) and never
forms the dense d_out x d_in matrix:

- exact: QR both stacks, B_s = Q_B R_B and A_s^T = Q_A R_A, so M = Q_B (R_B R_A^T) Q_A^T; the SVD of the
  small core gives the SVD of M. Cost O((d_out + d_in) R^2 + R^3).
- randomized (Halko, Martinsson & Tropp 2011; block Krylov, Musco & Musco 2015): a range finder with power
  iterations, where every product M X = B_s (A_s X) costs O(R d k) for k = rank + oversample columns. Linear
  in R, so in the number of clients.

All arithmetic is float64 (the randomized sketches may run in the inputs' float32, see there); callers cast
results back to the adapters' dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

F64 = torch.float64

#: a term of a product sum: (coefficient c, B: d_out x r, A: r x d_in)
ProductTerm = tuple[float, Tensor, Tensor]


@dataclass(frozen=True)
class FactoredSVD:
    """M ~= U diag(S) Vh with orthonormal columns of U and rows of Vh; S descending, non-negative.

    `total_energy` is ||M||_F^2 (exact, or an estimate when `estimated`), so the energy a truncation drops
    is total_energy - sum(S[:r]^2).
    """

    U: Tensor
    S: Tensor
    Vh: Tensor
    total_energy: float
    estimated: bool = False

    def truncated(self, rank: int) -> FactoredSVD:
        return FactoredSVD(self.U[:, :rank], self.S[:rank], self.Vh[:rank], self.total_energy, self.estimated)

    def energy_lost(self, rank: int) -> float:
        """Share of ||M||_F^2 outside the top `rank` directions (0 when M = 0)."""
        if self.total_energy <= 0.0:
            return 0.0
        kept = float(self.S[:rank].square().sum())
        return min(1.0, max(0.0, (self.total_energy - kept) / self.total_energy))


def check_product_terms(terms: Sequence[ProductTerm]) -> None:
    """Raise ValueError unless every (c, B, A) forms a product of the first term's shape."""
    if not terms:
        raise ValueError("a product sum needs at least one term")
    d_out, d_in = terms[0][1].shape[0], terms[0][2].shape[1]
    for i, (_, B, A) in enumerate(terms):
        if B.shape[0] != d_out or A.shape[1] != d_in or B.shape[1] != A.shape[0]:
            raise ValueError(
                f"term {i}: B {tuple(B.shape)} and A {tuple(A.shape)} do not form a ({d_out} x {d_in}) product"
            )


def stack_terms(terms: Sequence[ProductTerm], dtype: torch.dtype = F64) -> tuple[Tensor, Tensor]:
    """(B_s, A_s) with B_s A_s = sum_i c_i B_i A_i; the coefficients go on the A blocks."""
    check_product_terms(terms)
    B_s = torch.cat([B.to(dtype) for _, B, _ in terms], dim=1)
    A_s = torch.cat([float(c) * A.to(dtype) for c, _, A in terms], dim=0)
    return B_s, A_s


def input_dtype(terms: Sequence[ProductTerm]) -> torch.dtype:
    """The widest floating dtype among the factors (float32 for adapters as clients send them)."""
    dtype = torch.float32
    for _, B, A in terms:
        dtype = torch.promote_types(dtype, torch.promote_types(B.dtype, A.dtype))
    return dtype


def dense_product_sum(terms: Sequence[ProductTerm]) -> Tensor:
    """The dense d_out x d_in matrix sum_i c_i B_i A_i (the FlexLoRA path and the tests' reference)."""
    B_s, A_s = stack_terms(terms)
    return B_s @ A_s


def weighted_product_sum_factors(terms: Sequence[ProductTerm]) -> tuple[Tensor, Tensor, Tensor]:
    """(Q_B, core, Q_A) with Q_B @ core @ Q_A.T == sum_i c_i B_i A_i exactly (up to rounding).

    Q_B (d_out x k_B) and Q_A (d_in x k_A) have orthonormal columns; k = min(d, R).
    """
    B_s, A_s = stack_terms(terms)
    Q_B, R_B = torch.linalg.qr(B_s, mode="reduced")
    Q_A, R_A = torch.linalg.qr(A_s.T, mode="reduced")
    return Q_B, R_B @ R_A.T, Q_A


def svd_factored(terms: Sequence[ProductTerm]) -> FactoredSVD:
    """The exact thin SVD of sum_i c_i B_i A_i via QR of both stacks and the SVD of the small core."""
    Q_B, core, Q_A = weighted_product_sum_factors(terms)
    U_c, S, Vh_c = torch.linalg.svd(core, full_matrices=False)
    return FactoredSVD(Q_B @ U_c, S, Vh_c @ Q_A.T, float(S.square().sum()))


def svd_dense(M: Tensor) -> FactoredSVD:
    """The thin SVD of a dense matrix (float64): the reference path."""
    M = M.to(F64)
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return FactoredSVD(U, S, Vh, float(S.square().sum()))


def _orthonormal_columns(X: Tensor) -> Tensor:
    return torch.linalg.qr(X, mode="reduced")[0]


def stack_product_terms(terms: Sequence[ProductTerm], dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(A_s: R x d_in, Bt_s: R x d_out, c: R x 1) with sum_i c_i B_i A_i = Bt_s^T diag(c) A_s.

    One copy of each factor and no scaled temporaries: the coefficients stay a vector, applied to the small
    R x k intermediates of every product, so stacking costs one pass over the clients' factors."""
    check_product_terms(terms)
    A_s = torch.cat([A.to(dtype) for _, _, A in terms], dim=0)
    Bt_s = torch.cat([B.to(dtype).T for _, B, _ in terms], dim=0)
    c = torch.tensor([float(cc) for cc, B, _ in terms for _ in range(B.shape[1])], dtype=dtype)[:, None]
    return A_s, Bt_s, c


def randomized_svd_factored(
    terms: Sequence[ProductTerm],
    rank: int,
    generator: torch.Generator,
    oversample: int = 10,
    power_iters: int = 2,
    energy_probes: int = 32,
    sketch_dtype: torch.dtype | None = None,
) -> FactoredSVD:
    """Approximate top-`rank` SVD of sum_i c_i B_i A_i, touching M only through M X and M^T Y.

    A randomized block Krylov method (Musco & Musco 2015): with b = rank + oversample Gaussian probes Omega,
    the basis spans [M Omega, (M M^T) M Omega, ..., (M M^T)^q M Omega] (q = `power_iters`; each block
    orthogonalised against the earlier ones), and the SVD of the small Q^T M finishes it. It keeps every
    power iteration's block instead of only the last (subspace iteration), which on the flat spectra of many
    averaged client updates is markedly closer to the Eckart-Young optimum for the same number of products:
    2q + 2 products with M, each O(R d b), linear in R = sum r_i and so in the number of clients.
    ||M||_F^2 is not available without O(d R^2) work, so the energy outside the returned directions is
    estimated from `energy_probes` Gaussian probes (Hutchinson: E||(M - U S Vh) g||^2 = ||M - U S Vh||_F^2);
    they ride along with the first product (one pass over the factors serves both) and are never part of
    the basis, so the estimate stays unbiased.

    The sketches (every product with M) run in `sketch_dtype`, by default the inputs' own precision: for
    float32 adapters that is float32, 2-3x faster, and its rounding (~1e-7) is far below the range finder's
    own approximation error; the small SVD and the returned factors are float64.
    """
    dtype = sketch_dtype or input_dtype(terms)
    A_s, Bt_s, c = stack_product_terms(terms, dtype)
    d_in, d_out = A_s.shape[1], Bt_s.shape[1]
    width = min(d_out, d_in)
    k = min(rank + max(oversample, 0), width)

    def matmul(X: Tensor) -> Tensor:  # M X
        return Bt_s.T @ (c * (A_s @ X))

    def rmatmul(Y: Tensor) -> Tensor:  # M^T Y
        return A_s.T @ (c * (Bt_s @ Y))

    omega = torch.randn(d_in, k, generator=generator, dtype=F64).to(dtype)
    probes = torch.randn(d_in, max(energy_probes, 1), generator=generator, dtype=F64)
    first = matmul(torch.cat([omega, probes.to(dtype)], dim=1))
    Y, probed = first[:, :k], first[:, k:].to(F64)
    blocks = [_orthonormal_columns(Y)]
    basis = blocks[0]
    for _ in range(max(power_iters, 0)):
        if basis.shape[1] >= width:
            break
        K = matmul(_orthonormal_columns(rmatmul(blocks[-1])))
        for _ in range(2):  # twice: one pass loses orthogonality to the earlier blocks
            K = K - basis @ (basis.T @ K)
        block = _orthonormal_columns(K[:, : width - basis.shape[1]])
        blocks.append(block)
        basis = torch.cat([basis, block], dim=1)
    small = rmatmul(basis).T.to(F64)  # Q^T M: (basis width) x d_in
    U_s, S, Vh = torch.linalg.svd(small, full_matrices=False)
    U = basis.to(F64) @ U_s
    U, S, Vh = U[:, :rank], S[:rank], Vh[:rank]
    residual = probed - U @ (S[:, None] * (Vh @ probes))
    residual_energy = float(residual.square().sum()) / probes.shape[1]
    return FactoredSVD(U, S, Vh, float(S.square().sum()) + residual_energy, estimated=True)


def frobenius_sq_factored(B: Tensor, A: Tensor) -> float:
    """||B A||_F^2 = <B^T B, A A^T> without forming B A: O((d_out + d_in) r^2)."""
    B, A = B.to(F64), A.to(F64)
    return float(((B.T @ B) * (A @ A.T)).sum())


def frobenius_sq_sum(terms: Sequence[ProductTerm], probe_generator: torch.Generator | None = None) -> float:
    """||sum_i c_i B_i A_i||_F^2, exactly while that is cheap, else estimated from 32 Gaussian probes.

    Exact costs min((d_out + d_in) R^2, d_out d_in R); above ~2e8 multiply-adds per layer (hundreds of
    clients on wide layers) an unbiased Hutchinson estimate with cost O(32 R d) is used instead.
    """
    B_s, A_s = stack_terms(terms)
    (d_out, R), d_in = B_s.shape, A_s.shape[1]
    gram_cost, dense_cost = (d_out + d_in) * R * R, d_out * d_in * R
    if min(gram_cost, dense_cost) <= 2e8 or probe_generator is None:
        if gram_cost <= dense_cost:
            return float(((B_s.T @ B_s) * (A_s @ A_s.T)).sum())
        return float((B_s @ A_s).square().sum())
    probes = torch.randn(d_in, 32, generator=probe_generator, dtype=F64)
    return float((B_s @ (A_s @ probes)).square().sum()) / 32


def orthonormal_completion(basis: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """`count` orthonormal columns orthogonal to the orthonormal columns of `basis` (d x k), from seeded draws.

    Columns are nested: the first m columns for `count` = m are those for any larger `count`, so clients of
    different ranks share their leading directions.
    """
    d = basis.shape[0]
    if basis.shape[1] + count > d:
        raise ValueError(f"cannot complete {basis.shape[1]} directions with {count} more in dimension {d}")
    if count == 0:
        return torch.zeros(d, 0, dtype=F64)
    # one draw per direction (a single randn call is not prefix-stable across sizes): nested in `count`
    G = torch.stack([torch.randn(d, generator=generator, dtype=F64) for _ in range(count)], dim=1)
    for _ in range(2):  # project twice: one pass loses orthogonality when G is nearly inside span(basis)
        G = G - basis @ (basis.T @ G)
    Q, Rr = torch.linalg.qr(G, mode="reduced")
    signs = torch.where(torch.diagonal(Rr) < 0, -1.0, 1.0).to(F64)  # fix QR's sign ambiguity: nested columns
    return Q * signs[None, :]


def numerical_rank(S: Tensor, rtol: float = 1e-6) -> int:
    """How many singular values exceed rtol * the largest (0 for the zero matrix)."""
    if S.numel() == 0 or float(S[0]) <= 0.0:
        return 0
    return int((rtol * S[0] < S).sum())


def factors_from_svd(
    svd: FactoredSVD,
    rank: int,
    scaling: float,
    sigma: str,
    completion: torch.Generator,
    rtol: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """(B, A) of exactly `rank` columns/rows with scaling * B @ A = the best rank-`rank` part of the SVD.

    `sigma` places the singular values (and 1/scaling): on B (A = V^T has orthonormal rows), on A (B = U),
    or split as sqrt on both. Directions without energy (the update is zero or has rank below `rank`) get
    seeded orthonormal rows of A orthogonal to the kept ones and zero columns of B: the update is unchanged
    and, as in LoRA's own initialisation, A is never zero, so training has a gradient for B. (Beyond the
    layer width there are no more directions: such rows stay zero; hosts never allow that rank.)
    """
    if scaling <= 0:
        raise ValueError(f"scaling must be positive, got {scaling}")
    k = min(numerical_rank(svd.S, rtol), rank)
    U, S, Vh = svd.U[:, :k], svd.S[:k] / scaling, svd.Vh[:k]
    if sigma == "B":
        B, A = U * S[None, :], Vh
    elif sigma == "A":
        B, A = U, S[:, None] * Vh
    elif sigma == "split":
        root = S.sqrt()
        B, A = U * root[None, :], root[:, None] * Vh
    else:
        raise ValueError(f"sigma must be one of A, B, split; got {sigma!r}")
    d_out, d_in = svd.U.shape[0], svd.Vh.shape[1]
    fresh = min(rank, d_in, d_out) - k  # a rank above the layer width has no further directions: zero padding
    if fresh > 0:
        A = torch.cat([A, orthonormal_completion(Vh.T, fresh, completion).T], dim=0)
    if rank > A.shape[0]:
        A = torch.cat([A, torch.zeros(rank - A.shape[0], d_in, dtype=F64)], dim=0)
    return torch.cat([B, torch.zeros(d_out, rank - k, dtype=F64)], dim=1), A
