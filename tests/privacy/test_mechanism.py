"""Clipping and noise on adapters: norms after clipping, the noise's std against its formula."""

from __future__ import annotations

import math

import pytest
import torch

from fedlora.aggregators.fedit import FedIT
from fedlora.aggregators.hlora import HLoRA
from fedlora.lora.adapter import Adapter
from fedlora.privacy.client import ClientNoise, privatize
from fedlora.privacy.engine import PrivacyEngine, PrivacySettings
from fedlora.privacy.mechanism import (
    clip_scale,
    clipped_terms,
    factor_norm,
    noised_product_combine,
    product_norm,
)


def adapter(seed: int, rank: int = 3, d_out: int = 12, d_in: int = 10, scale: float = 1.0) -> Adapter:
    g = torch.Generator().manual_seed(seed)
    return Adapter.from_factors(
        {
            "l0": (torch.randn(rank, d_in, generator=g) * scale, torch.randn(d_out, rank, generator=g) * scale),
            "l1": (torch.randn(rank, d_in, generator=g) * scale, torch.randn(d_out, rank, generator=g) * scale),
        },
        alpha=2.0 * rank,
        extras={"head.weight": torch.randn(2, d_in, generator=g) * scale},
    )


def dense_delta_norm(a: Adapter, b: Adapter) -> float:
    sq = sum(float((a.delta(n, torch.float64) - b.delta(n, torch.float64)).square().sum()) for n in a.layers)
    sq += sum(float((a.extras[n].double() - b.extras[n].double()).square().sum()) for n in a.extras)
    return math.sqrt(sq)


@pytest.mark.parametrize("clip", [0.1, 1.0, 5.0])
def test_after_clipping_every_factor_space_update_norm_is_at_most_clip_norm(clip):
    agg = FedIT(rank=3)
    for seed in range(6):
        start, update = adapter(100 + seed), adapter(seed, scale=1.0 + seed)
        s = clip_scale(factor_norm(update, start, rank=3), clip)
        clipped = agg.combine(clipped_terms(1.0, update, start, s))  # the engine's rewrite of one term
        assert factor_norm(clipped, start, rank=3) <= clip * (1 + 1e-6)
        if factor_norm(update, start, rank=3) <= clip:
            assert s == 1.0


@pytest.mark.parametrize("clip", [0.1, 1.0, 5.0])
def test_after_clipping_every_product_space_update_norm_is_at_most_clip_norm(clip):
    for seed in range(6):
        start, update = adapter(100 + seed, rank=2), adapter(seed, rank=3, scale=1.0 + seed)
        norm = product_norm(update, start)
        assert norm == pytest.approx(dense_delta_norm(update, start), rel=1e-9)  # factored == dense
        s = clip_scale(norm, clip)
        terms = clipped_terms(1.0, update, start, s)
        # the rewritten terms' effective update, minus the start's: the clipped difference
        sq = 0.0
        for n in update.layers:
            M = sum(w * ad.delta(n, torch.float64) for w, ad in terms) - start.delta(n, torch.float64)
            sq += float(M.square().sum())
        for n in update.extras:
            h = sum(w * ad.extras[n].double() for w, ad in terms) - start.extras[n].double()
            sq += float(h.square().sum())
        assert math.sqrt(sq) <= clip * (1 + 1e-9)


def test_a_client_clips_its_own_update_and_keeps_untrained_factors_as_sent():
    start, update = adapter(1), adapter(2, scale=3.0)
    update = Adapter.from_factors(
        {n: (start.layers[n].A, f.B) for n, f in update.layers.items()}, alpha=6.0, extras=update.extras
    )
    sent, norm = privatize(update, start, "B", ClientNoise(clip_norm=0.5, noise_multiplier=0.0, seed=0), 0, 0)
    assert norm > 0.5
    assert factor_norm(sent, start, rank=3) <= 0.5 * (1 + 1e-6)
    assert all(torch.equal(sent.layers[n].A, start.layers[n].A) for n in start.layers)


def _residuals(noised: Adapter, clean: Adapter, factors: str = "AB") -> torch.Tensor:
    parts = []
    for n, f in noised.layers.items():
        parts += [(f.A.double() - clean.layers[n].A.double()).flatten()] if "A" in factors else []
        parts += [(f.B.double() - clean.layers[n].B.double()).flatten()] if "B" in factors else []
    parts += [(t.double() - clean.extras[n].double()).flatten() for n, t in noised.extras.items()]
    return torch.cat(parts)


def test_central_factor_noise_has_the_std_of_the_formula_sigma_c_max_weight():
    """std = sigma * C * max_client sum|w|: here weights 0.25 and 0.75, so sigma * C * 0.75."""
    sigma, clip = 1.3, 0.2
    start = adapter(0, rank=16, d_out=64, d_in=64)
    updates = [adapter(1, rank=16, d_out=64, d_in=64), adapter(2, rank=16, d_out=64, d_in=64)]
    jobs = {
        id(u): type("J", (), {"client": c, "trains": "AB", "start_adapter": start})() for c, u in enumerate(updates)
    }
    terms = [(0.25, updates[0]), (0.75, updates[1])]
    settings = PrivacySettings(clip_norm=clip, noise_multiplier=sigma, delta=1e-5, seed=3)
    engine = PrivacyEngine(settings, "factor", rank=16)
    noised = engine.combine(FedIT(rank=16), terms, lambda a: jobs.get(id(a)), version=1)
    quiet = PrivacyEngine(PrivacySettings(clip_norm=clip, noise_multiplier=0.0, delta=1e-5), "factor", rank=16)
    clean = quiet.combine(FedIT(rank=16), terms, lambda a: jobs.get(id(a)), version=1)
    r = _residuals(noised, clean)
    assert r.numel() > 2000
    expected = sigma * clip * 0.75
    assert engine.pending.std == pytest.approx(expected)
    assert float(r.std()) == pytest.approx(expected, rel=0.05)
    assert abs(float(r.mean())) < 4 * expected / math.sqrt(r.numel())
    # each client's effective noise multiplier: sigma * max_weight / its weight
    assert engine.pending.sigmas == pytest.approx({0: sigma * 3.0, 1: sigma})


def test_central_noise_is_added_only_to_the_factors_the_jobs_train():
    start = adapter(0)
    update = Adapter.from_factors(
        {n: (start.layers[n].A, f.B) for n, f in adapter(1).layers.items()}, alpha=6.0, extras=adapter(1).extras
    )
    job = type("J", (), {"client": 0, "trains": "B", "start_adapter": start})()
    engine = PrivacyEngine(PrivacySettings(clip_norm=1.0, noise_multiplier=1.0, delta=1e-5), "factor", rank=3)
    out = engine.combine(FedIT(rank=3), [(1.0, update)], lambda a: job if a is update else None, version=1)
    assert all(torch.equal(out.layers[n].A, start.layers[n].A) for n in start.layers)
    assert not any(torch.equal(out.layers[n].B, update.layers[n].B) for n in start.layers)


def test_product_space_noise_on_the_dense_sum_has_the_formula_std_and_truncation_follows():
    """With the server rank at the layer width the truncated SVD keeps everything: M + Z comes back."""
    d = 48
    terms = [(0.5, adapter(1, rank=2, d_out=d, d_in=d)), (0.5, adapter(2, rank=3, d_out=d, d_in=d))]
    std = 0.05
    out, _ = noised_product_combine(terms, rank=d, std=std, seed=0, version=1)
    clean = HLoRA(rank=d).combine(terms)
    diffs = [(out.delta(n, torch.float64) - clean.delta(n, torch.float64)).flatten() for n in out.layers]
    diffs += [(out.extras[n].double() - clean.extras[n].double()).flatten() for n in out.extras]
    r = torch.cat(diffs)
    assert float(r.std()) == pytest.approx(std, rel=0.05)
    # at a lower rank, the result is the best rank-r approximation of the noised sum: rank r exactly
    low, diag = noised_product_combine(terms, rank=4, std=std, seed=0, version=1)
    assert low.max_rank == 4 and diag["energy_lost"] > 0


def test_client_noise_has_std_sigma_c_and_depends_only_on_seed_client_and_job():
    start = adapter(0, rank=16, d_out=64, d_in=64)
    update = adapter(1, rank=16, d_out=64, d_in=64)
    noise = ClientNoise(clip_norm=0.3, noise_multiplier=2.0, seed=5)
    sent, _ = privatize(update, start, "AB", noise, client=2, client_job=7)
    clipped, _ = privatize(update, start, "AB", ClientNoise(0.3, 0.0, 5), client=2, client_job=7)
    assert float(_residuals(sent, clipped).std()) == pytest.approx(0.6, rel=0.05)
    again, _ = privatize(update, start, "AB", noise, client=2, client_job=7)
    other, _ = privatize(update, start, "AB", noise, client=2, client_job=8)
    assert again.allclose(sent) and not other.allclose(sent)


def test_a_client_with_zero_noise_and_no_clipping_sends_its_update_unchanged():
    # sigma C = 0 * inf is NaN in floating point: it once poisoned every update (and the run redispatched forever)
    start, update = adapter(0), adapter(1)
    sent, norm = privatize(update, start, "AB", ClientNoise(math.inf, 0.0, 5), client=0, client_job=0)
    assert norm > 0 and sent.allclose(update) and all(torch.isfinite(t).all() for t in sent.tensors().values())


def test_noise_with_no_clipping_is_refused_at_the_config_field():
    from pydantic import ValidationError

    from fedlora.config import PrivacyConfig

    with pytest.raises(ValidationError, match="clip_norm"):
        PrivacyConfig(clip_norm=math.inf, noise_multiplier=0.5)
    assert PrivacyConfig(clip_norm=math.inf, noise_multiplier=0.0).noise_multiplier == 0.0


def test_a_release_counts_the_numbers_it_noises_in_its_space():
    from fedlora.privacy.mechanism import noised_coordinates

    ad = adapter(0)  # two layers, rank 3, 12 x 10, a 2 x 10 head
    assert noised_coordinates(ad, "product", ["AB"]) == 2 * 12 * 10 + 20  # the dense sum: every entry
    assert noised_coordinates(ad, "factor", ["AB"]) == 2 * (3 * 10 + 12 * 3) + 20
    assert noised_coordinates(ad, "factor", ["B"]) == 2 * 12 * 3 + 20  # FFA-LoRA: A is never noised
