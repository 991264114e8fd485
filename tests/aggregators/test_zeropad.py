"""Zero-padding (HetLoRA): the factor-space baseline and its bias."""

import math

import pytest
import torch

from fedlora import get_aggregator
from fedlora.aggregators.zeropad import prune_trailing
from fedlora.errors import ConfigError
from tests.aggregators.common import SHAPES, dense_sum, mixed_terms, random_adapter


def pad(t, rank, dim):
    shape = list(t.shape)
    shape[dim] = rank - shape[dim]
    return torch.cat([t, torch.zeros(shape, dtype=t.dtype)], dim=dim)


def test_zeropad_averages_padded_factors_at_the_global_scaling():
    terms = mixed_terms()
    agg = get_aggregator("zeropad", rank=5)
    out = agg.combine(terms)
    s_g = terms[0][1].layers["attn.q"].alpha / 5
    for name in SHAPES:
        A = sum(w * pad(ad.layers[name].A, 5, 0) for w, ad in terms)
        B = sum(w * pad(ad.layers[name].B * (ad.layers[name].scaling / s_g), 5, 1) for w, ad in terms)
        torch.testing.assert_close(out.layers[name].A, A, rtol=0, atol=1e-12)
        torch.testing.assert_close(out.layers[name].B, B, rtol=0, atol=1e-12)


def test_zeropad_is_biased_for_mixed_ranks_and_exact_for_identical_adapters():
    terms = mixed_terms()
    agg = get_aggregator("zeropad", rank=5)
    out = agg.combine(terms)
    bias = math.sqrt(
        sum(float((out.delta(n) - dense_sum(terms, n)).square().sum()) for n in SHAPES)
        / sum(float(dense_sum(terms, n).square().sum()) for n in SHAPES)
    )
    assert bias > 0.1  # the product of averages is far from the average of products
    assert agg.last_diagnostics["rel_error"] == pytest.approx(bias, rel=1e-6)

    same = random_adapter(3, 6.0, seed=9)
    out = agg.combine([(0.25, same)] * 4)
    for name in SHAPES:
        torch.testing.assert_close(out.delta(name), same.delta(name), rtol=0, atol=1e-10)
    assert agg.last_diagnostics["rel_error"] < 1e-7


def test_distribute_truncates_and_rescales_for_the_client_alpha():
    agg = get_aggregator("zeropad", rank=5)
    glob = agg.combine(mixed_terms())
    client = agg.distribute(glob, rank=2, alpha=1.0)
    for name, f in client.layers.items():
        g = glob.layers[name]
        assert f.rank == 2 and f.alpha == 1.0
        expected = g.scaling * g.B[:, :2] @ g.A[:2]  # the first two directions of the global, same update
        torch.testing.assert_close(client.delta(name), expected, rtol=0, atol=1e-10)


def test_directions_no_client_covered_are_revived_in_distribute():
    agg = get_aggregator("zeropad", rank=4)
    glob = agg.combine([(1.0, random_adapter(2, 4.0, seed=1))])  # rows 2, 3 of A and columns of B are zero
    client = agg.distribute(glob, rank=4, alpha=4.0)
    for name, f in client.layers.items():
        assert torch.count_nonzero(f.A[2:].abs().sum(dim=1)) == 2  # A rows re-seeded: B can get a gradient
        torch.testing.assert_close(client.delta(name), glob.delta(name), rtol=0, atol=1e-12)  # update unchanged


def test_norm_weights_follow_the_update_norms():
    small, large = random_adapter(2, 4.0, seed=1), random_adapter(2, 4.0, seed=2).map(lambda t: 3 * t)
    agg = get_aggregator("zeropad", rank=2, weights="norm")
    out = agg.combine([(0.5, small), (0.5, large)])
    name = "attn.q"
    n_s, n_l = small.delta(name).norm(), large.delta(name).norm()
    w_s, w_l = float(n_s / (n_s + n_l)), float(n_l / (n_s + n_l))
    torch.testing.assert_close(
        out.layers[name].A, w_s * small.layers[name].A + w_l * large.layers[name].A, rtol=0, atol=1e-12
    )
    with pytest.raises(ConfigError, match="aggregator.weights=norm"):
        agg.combine([(1.0, small), (0.5, large), (-0.5, large)])


def test_prune_drops_small_trailing_components_and_keeps_the_rank():
    ad = random_adapter(4, 4.0, seed=3)
    layers = {}
    for name, f in ad.layers.items():
        B = f.B.clone()
        B[:, 3] *= 1e-4  # a negligible last component
        layers[name] = type(f)(f.A, B, f.alpha)
    ad = type(ad)(layers=layers, extras=ad.extras)
    dropped, keep = prune_trailing(ad.layers["attn.q"].B, ad.layers["attn.q"].A, 0.1, 0.5)
    assert dropped == 1 and keep.tolist() == [True, True, True, False]
    agg = get_aggregator("zeropad", rank=4, prune=True)
    out = agg.combine([(1.0, ad)])
    assert agg.last_diagnostics["pruned_components"] == 2.0  # one per layer
    for f in out.layers.values():
        assert f.rank == 4 and torch.count_nonzero(f.B[:, 3]) == 0
    assert agg.last_diagnostics["rel_error"] > 0  # measured against the unpruned update


def test_zeropad_refuses_terms_above_the_server_rank():
    with pytest.raises(ConfigError, match="lora.rank=2"):
        get_aggregator("zeropad", rank=2).combine([(1.0, random_adapter(3, 1.0, 0))])
