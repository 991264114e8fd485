"""The Gaussian mechanism on adapters: clip an update relative to its start, add seeded noise (pure functions).

An update is measured in the space its aggregator combines (`Aggregator.privacy_space`):

- `factor` (fedit, ffa, rolora, fedsa): the concatenation of the factor differences and the head's,
  ||[A - A_0, k (B - B_0), head - head_0]||, with k = (alpha_i / r_i) / (alpha_g / r_max) re-expressing B at
  the combined adapter's scaling (1 for equal ranks; FFA's padding for mixed ones);
- `product` (hlora, flexlora, zeropad's product view): the effective update's difference and the head's,
  sqrt(sum_layers ||(alpha/r) B A - (alpha_0/r_0) B_0 A_0||_F^2 + ||head - head_0||^2), computed in factored
  form (no dense matrix).

Clipping to C scales the difference by s = min(1, C / norm). Because every supported combination is linear in
its terms before any truncation, a clipped term is written as two: (w s, x_i) + (w (1 - s), x_start_i), the
start x_start_i being the adapter the job was sent (public: the previous release). Noise draws come from
`seeding.torch_generator(seed, purpose, *coordinates)` only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from torch import Tensor

from fedlora.errors import UpdateRejected
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.algebra import Term
from fedlora.lora.factorized import F64, frobenius_sq_sum
from fedlora.seeding import torch_generator

Space = Literal["factor", "product"]


def _extras_sq(update: Adapter, start: Adapter) -> float:
    return sum(float((t.to(F64) - start.extras[n].to(F64)).square().sum()) for n, t in update.extras.items())


def factor_norm(update: Adapter, start: Adapter, rank: int, alpha: float | None = None) -> float:
    """||[A - A_0, k (B - B_0), head - head_0]|| with B at the scaling alpha / rank (the combined adapter's)."""
    sq = _extras_sq(update, start)
    for name, f in update.layers.items():
        f0 = start.layers[name]
        if f.A.shape != f0.A.shape or f.B.shape != f0.B.shape:
            raise ValueError(f"layer {name}: the update's factors have other shapes than its start's")
        k = f.scaling / ((alpha if alpha is not None else f.alpha) / rank)
        sq += float((f.A.to(F64) - f0.A.to(F64)).square().sum())
        sq += float(((f.B.to(F64) - f0.B.to(F64)) * k).square().sum())
    return math.sqrt(max(sq, 0.0))


def product_norm(update: Adapter, start: Adapter, scaled: bool = True) -> float:
    """sqrt(sum_layers ||dW - dW_0||_F^2 + ||head - head_0||^2), dW = (alpha/r) B A (B A when not `scaled`)."""
    sq = _extras_sq(update, start)
    for name, f in update.layers.items():
        f0 = start.layers[name]
        c, c0 = (f.scaling, f0.scaling) if scaled else (1.0, 1.0)
        terms = [(c, f.B, f.A), (-c0, f0.B, f0.A)]
        terms = [(w, B, A) for w, B, A in terms if B.shape[1] > 0]
        if terms:
            sq += frobenius_sq_sum(terms)
    return math.sqrt(max(sq, 0.0))


def update_norm(update: Adapter, start: Adapter, space: Space, rank: int, scaled: bool = True) -> float:
    if space == "product":
        return product_norm(update, start, scaled)
    return factor_norm(update, start, rank)


def clip_scale(norm: float, clip_norm: float) -> float:
    """s = min(1, C / norm): the factor that brings the update's norm to at most C (1 for C = inf)."""
    if not math.isfinite(clip_norm) or norm <= clip_norm:
        return 1.0
    return clip_norm / norm


def noise_std(noise_multiplier: float, clip_norm: float) -> float:
    """sigma * C, with no noise at sigma = 0 whatever C is (0 * inf would be NaN and poison every update)."""
    if noise_multiplier <= 0.0:
        return 0.0
    return noise_multiplier * clip_norm


def clipped_terms(w: float, update: Adapter, start: Adapter, scale: float) -> list[Term]:
    """The term (w, update) with its difference from `start` scaled by `scale` (itself when scale = 1)."""
    if scale >= 1.0:
        return [(w, update)]
    return [(w * scale, update), (w * (1.0 - scale), start)]


def clip_adapter(update: Adapter, start: Adapter, scale: float, trains: str = "AB") -> Adapter:
    """start + scale (update - start) factor by factor (a client's own clipping; the untrained factor as sent)."""
    if scale >= 1.0:
        return update

    def mix(t: Tensor, t0: Tensor) -> Tensor:
        return (t0.to(F64) + scale * (t.to(F64) - t0.to(F64))).to(t.dtype)

    layers = {}
    for name, f in update.layers.items():
        f0 = start.layers[name]
        A = mix(f.A, f0.A) if "A" in trains else f.A
        B = mix(f.B, f0.B) if "B" in trains else f.B
        layers[name] = LoRAFactors(A, B, f.alpha)
    return Adapter(layers=layers, extras={n: mix(t, start.extras[n]) for n, t in update.extras.items()})


def gaussian(shape: Sequence[int], std: float, seed: int, purpose: str, *coords: int | str) -> Tensor:
    """std * N(0, I) in float64, from a generator that depends only on (seed, purpose, coords)."""
    return torch.randn(*shape, generator=torch_generator(seed, purpose, *coords), dtype=F64) * std


def add_noise(
    adapter: Adapter, std: float, trains: Iterable[str], seed: int, purpose: str, *coords: int | str
) -> Adapter:
    """`adapter` with N(0, std^2) added to every coordinate of the factors in `trains` and of the head."""
    if std <= 0.0:
        return adapter
    trained = set("".join(trains))

    def noised(t: Tensor, key: str) -> Tensor:
        return (t.to(F64) + gaussian(t.shape, std, seed, purpose, *coords, key)).to(t.dtype)

    layers = {}
    for name, f in adapter.layers.items():
        A = noised(f.A, f"lora.{name}.A") if "A" in trained else f.A
        B = noised(f.B, f"lora.{name}.B") if "B" in trained else f.B
        layers[name] = LoRAFactors(A, B, f.alpha)
    extras = {n: noised(t, f"extra.{n}") for n, t in adapter.extras.items()}
    return Adapter(layers=layers, extras=extras)


def noised_coordinates(adapter: Adapter, space: Space, trains: Iterable[str]) -> int:
    """How many numbers a release noises: every d_out x d_in entry in product space, the trained factors'
    entries in factor space, and the head. Noise norm = std sqrt(n), so sigma sqrt(n) is the noise's norm
    against the largest client contribution (its bound is C S_c): the signal-to-noise of one release."""
    trained = set("".join(trains))
    n = sum(t.numel() for t in adapter.extras.values())
    for f in adapter.layers.values():
        if space == "product":
            n += f.d_out * f.d_in
        else:
            n += f.A.numel() * ("A" in trained) + f.B.numel() * ("B" in trained)
    return n


def check_frozen(job_client: int, trains: str, update: Adapter, start: Adapter, space: Space) -> None:
    """Under central DP an update may change only what its job trains (noise covers only that), and a
    factor-space update must keep its start's shapes (its difference is taken factor by factor)."""
    for name, f in update.layers.items():
        f0 = start.layers.get(name)
        if f0 is None:
            continue
        same_shape = f.A.shape == f0.A.shape and f.B.shape == f0.B.shape
        if space == "factor" and not same_shape:
            raise UpdateRejected(
                "wrong_shape",
                f"client {job_client}, layer {name}: factors {tuple(f.A.shape)}/{tuple(f.B.shape)} differ from the "
                "job's; under privacy a factor-space update keeps the shapes it was sent",
            )
        for which in "AB":
            if which in trains:
                continue
            t, t0 = getattr(f, which), getattr(f0, which)
            if t.shape != t0.shape or not torch.equal(t, t0):
                raise UpdateRejected(
                    "changed_frozen",
                    f"client {job_client}, layer {name}: factor {which} changed, but the job trains {trains} only",
                )


def noised_product_combine(
    terms: Sequence[Term],
    rank: int,
    std: float,
    seed: int,
    version: int,
    *,
    scaled: bool = True,
    sigma: str = "B",
    completion_seed: int = 0,
) -> tuple[Adapter, dict[str, float]]:
    """Central noise in product space: per layer M = sum_i w_i dW_i + Z, Z ~ N(0, std^2) (d_out x d_in),
    factored to `rank` by a truncated SVD (post-processing of the noised M); the head gets the same noise.

    The dense M is the price: d_out x d_in float64 per layer and a full SVD (docs/methods.md measures it).
    Returns the adapter and the diagnostics the aggregation event logs (energy the truncation dropped).
    """
    from fedlora.aggregators.support import Diagnostics, global_alpha, layer_generator, product_terms
    from fedlora.lora.algebra import check_terms, combine_extras
    from fedlora.lora.factorized import dense_product_sum, factors_from_svd, svd_dense

    check_terms(terms)
    diag = Diagnostics()
    layers = {}
    for name, f0 in terms[0][1].layers.items():
        pterms = product_terms(terms, name, scaled=scaled)
        M = dense_product_sum(pterms) if pterms else torch.zeros(f0.d_out, f0.d_in, dtype=F64)
        M = M + gaussian((f0.d_out, f0.d_in), std, seed, "dp-noise", version, f"lora.{name}")
        svd = svd_dense(M)
        diag.add_truncation(svd.total_energy, svd.energy_lost(rank) * svd.total_energy)
        alpha = global_alpha(terms, name)
        B, A = factors_from_svd(
            svd,
            rank,
            alpha / rank if scaled else 1.0,
            sigma,
            layer_generator(completion_seed, "product-space-completion", name),
        )
        layers[name] = LoRAFactors(A.to(f0.A.dtype), B.to(f0.B.dtype), alpha)
    extras = {
        n: (t.to(F64) + gaussian(t.shape, std, seed, "dp-noise", version, f"extra.{n}")).to(t.dtype)
        for n, t in combine_extras(terms).items()
    }
    return Adapter(layers=layers, extras=extras), diag.result()
