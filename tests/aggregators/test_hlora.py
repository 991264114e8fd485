"""HLoRA against dense float64 references on random adapters of mixed ranks, alphas and shapes."""

import pytest
import torch

from fedlora import get_aggregator
from fedlora.errors import ConfigError
from fedlora.lora.init import fresh_adapter
from tests.aggregators.common import SHAPES, best_rank, dense_sum, mixed_terms, random_adapter, tail_energy


def test_without_truncation_the_global_update_is_the_exact_weighted_sum():
    terms = mixed_terms()  # ranks 2+3+5+1 = 11 <= r_max: nothing to truncate
    agg = get_aggregator("hlora", rank=11, method="exact")
    out = agg.combine(terms)
    for name in SHAPES:
        assert out.layers[name].rank == 11
        torch.testing.assert_close(out.delta(name), dense_sum(terms, name), rtol=0, atol=1e-10)
    assert agg.last_diagnostics["energy_lost"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("sigma", ["B", "A", "split"])
def test_truncated_global_is_the_dense_truncated_svd(sigma):
    terms = mixed_terms()
    agg = get_aggregator("hlora", rank=3, sigma=sigma, method="exact")
    out = agg.combine(terms)
    lost = total = 0.0
    for name in SHAPES:
        M = dense_sum(terms, name)
        torch.testing.assert_close(out.delta(name), best_rank(M, 3), rtol=0, atol=1e-10)
        assert out.layers[name].alpha == terms[0][1].layers[name].alpha  # the first term's alpha; B absorbs scaling
        lost, total = lost + tail_energy(M, 3), total + float(M.square().sum())
    assert agg.last_diagnostics["energy_lost"] == pytest.approx(lost / total, abs=1e-7)
    assert agg.last_diagnostics["rel_error"] == pytest.approx((lost / total) ** 0.5, abs=1e-7)


def test_sigma_on_B_gives_A_orthonormal_rows():
    out = get_aggregator("hlora", rank=3, sigma="B").combine(mixed_terms())
    for f in out.layers.values():
        torch.testing.assert_close(f.A @ f.A.T, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_distribute_gives_the_best_rank_r_approximation(rank):
    agg = get_aggregator("hlora", rank=5, method="exact")
    glob = agg.combine(mixed_terms())
    client = agg.distribute(glob, rank=rank, alpha=3.0)
    for name, f in client.layers.items():
        assert f.rank == rank and f.alpha == 3.0
        G = glob.delta(name)
        # Eckart-Young: the error is exactly the energy of the discarded singular values
        err = float((G - client.delta(name)).square().sum())
        assert err == pytest.approx(tail_energy(G, rank), rel=1e-9, abs=1e-12)
        torch.testing.assert_close(client.delta(name), best_rank(G, rank), rtol=0, atol=1e-10)
    torch.testing.assert_close(client.extras["head.weight"], glob.extras["head.weight"])


def test_distribute_of_a_zero_update_gives_a_trainable_A():
    # the engine's initial global: random A, B = 0. Both factors zero would never receive a gradient.
    glob = fresh_adapter(SHAPES, 5, 12.0, torch.Generator().manual_seed(0))  # 5: the narrowest layer's width
    agg = get_aggregator("hlora", rank=5, sigma="split")
    for rank in (2, 5):
        client = agg.distribute(glob, rank=rank, alpha=12.0)
        for f in client.layers.values():
            assert torch.count_nonzero(f.B) == 0
            assert torch.linalg.matrix_rank(f.A.double()) == rank
            assert f.A.dtype == torch.float32  # cast back to the adapters' dtype
    small, large = agg.distribute(glob, 2, 12.0), agg.distribute(glob, 5, 12.0)
    torch.testing.assert_close(small.layers["attn.q"].A, large.layers["attn.q"].A[:2])  # nested directions


def test_rank_deficient_combination_is_padded_to_r_max_with_live_directions():
    terms = [(1.0, random_adapter(1, 2.0, seed=3))]  # a rank-1 update in a rank-4 global
    out = get_aggregator("hlora", rank=4, sigma="A").combine(terms)
    for name, f in out.layers.items():
        assert f.rank == 4
        torch.testing.assert_close(out.delta(name), dense_sum(terms, name), rtol=0, atol=1e-10)
        assert torch.linalg.matrix_rank(f.A) == 4


def test_negative_weights_combine_linearly():
    a, b = random_adapter(2, 4.0, 1), random_adapter(3, 8.0, 2)
    agg = get_aggregator("hlora", rank=5)
    out = agg.combine([(1.0, a), (0.7, b), (-0.7, b)])  # FedBuff-style: x + lr (x_i - x_start)
    for name in SHAPES:
        torch.testing.assert_close(out.delta(name), a.delta(name), rtol=0, atol=1e-10)
    torch.testing.assert_close(out.extras["head.weight"], a.extras["head.weight"], rtol=0, atol=1e-12)


def test_unscaled_reproduces_the_prototype_that_ignores_alpha_over_r():
    terms = mixed_terms()
    out = get_aggregator("hlora", rank=11, scaling="unscaled").combine(terms)
    for name in SHAPES:
        unscaled = sum(w * ad.layers[name].B @ ad.layers[name].A for w, ad in terms)
        f = out.layers[name]
        torch.testing.assert_close(f.B @ f.A, unscaled, rtol=0, atol=1e-10)
        assert not torch.allclose(out.delta(name), dense_sum(terms, name), atol=1e-3)  # biased for mixed alpha/r


def test_randomized_path_is_near_optimal_and_auto_picks_it_for_many_clients():
    shapes = {"q": (40, 30)}
    terms = [(1 / 30, random_adapter(4 + i % 5, 8.0, seed=i, shapes=shapes)) for i in range(30)]  # sum r_i = 180
    exact = get_aggregator("hlora", rank=4, method="exact")
    auto = get_aggregator("hlora", rank=4, oversample=6, power_iters=3)
    e, r = exact.combine(terms), auto.combine(terms)
    assert auto.last_diagnostics["randomized_layers"] == 1.0 and "randomized_layers" not in exact.last_diagnostics
    M = dense_sum(terms, "q")
    optimum = tail_energy(M, 4)
    err_exact = float((M - e.delta("q")).square().sum())
    err_rand = float((M - r.delta("q")).square().sum())
    assert err_exact == pytest.approx(optimum, rel=1e-9)
    assert optimum <= err_rand <= 1.02 * optimum
    assert auto.last_diagnostics["energy_lost"] == pytest.approx(exact.last_diagnostics["energy_lost"], rel=0.15)


def test_extras_combine_linearly_with_the_same_weights():
    terms = mixed_terms()
    out = get_aggregator("hlora", rank=4).combine(terms)
    expected = sum(w * ad.extras["head.weight"] for w, ad in terms)
    torch.testing.assert_close(out.extras["head.weight"], expected, rtol=0, atol=1e-12)


def test_clear_errors_for_bad_options_and_ranks():
    with pytest.raises(ConfigError, match=r"aggregator\.sigma"):
        get_aggregator("hlora", rank=4, sigma="C")
    with pytest.raises(ConfigError, match=r"aggregator\.method"):
        get_aggregator("hlora", rank=4, method="fast")
    agg = get_aggregator("hlora", rank=2)
    with pytest.raises(ConfigError, match="lora.rank=2"):
        agg.distribute(agg.combine([(1.0, random_adapter(2, 1.0, 0))]), rank=3, alpha=1.0)
    with pytest.raises(ValueError, match="not finite"):
        agg.combine([(float("nan"), random_adapter(2, 1.0, 0))])
    with pytest.raises(ValueError, match="shape"):
        agg.combine(
            [
                (0.5, random_adapter(2, 1.0, 0)),
                (0.5, random_adapter(2, 1.0, 1, shapes={"attn.q": (7, 12), "attn.v": (5, 11)})),
            ]
        )
