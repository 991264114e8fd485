import pytest
import torch

from fedlora import Adapter
from fedlora.lora.adapter import LoRAFactors
from fedlora.lora.algebra import rescale_alpha


def random_adapter(ranks: dict[str, int], shapes: dict[str, tuple[int, int]], alpha: float, seed: int = 0) -> Adapter:
    g = torch.Generator().manual_seed(seed)
    factors = {
        n: (
            torch.randn(r, shapes[n][1], generator=g, dtype=torch.float64),
            torch.randn(shapes[n][0], r, generator=g, dtype=torch.float64),
        )
        for n, r in ranks.items()
    }
    return Adapter.from_factors(factors, alpha=alpha, extras={"head.weight": torch.randn(2, 3, generator=g)})


def test_delta_is_alpha_over_r_times_B_A():
    shapes = {"q": (7, 5), "v": (3, 9)}
    ad = random_adapter({"q": 2, "v": 4}, shapes, alpha=8.0)
    for name, (d_out, d_in) in shapes.items():
        f = ad.layers[name]
        expected = (8.0 / f.rank) * (f.B.double() @ f.A.double())
        assert ad.delta(name).shape == (d_out, d_in)
        torch.testing.assert_close(ad.delta(name), expected, rtol=0, atol=1e-12)
    assert ad.rank("q") == 2 and ad.rank("v") == 4
    assert ad.ranks == {"q": 2, "v": 4} and ad.max_rank == 4


def test_nbytes_counts_every_tensor_at_its_dtype():
    ad = Adapter.from_factors({"q": (torch.zeros(2, 5), torch.zeros(7, 2))}, alpha=4)
    assert ad.nbytes == (2 * 5 + 7 * 2) * 4
    ad64 = ad.map(lambda t: t.double())
    assert ad64.nbytes == 2 * ad.nbytes


def test_tensor_round_trip_keeps_layout_alphas_and_extras():
    ad = random_adapter(
        {"encoder.layer.0.query": 3, "encoder.layer.0.value": 1},
        {"encoder.layer.0.query": (4, 6), "encoder.layer.0.value": (4, 6)},
        alpha=2.5,
    )
    back = Adapter.from_tensors(ad.tensors(), ad.alphas())
    assert back.allclose(ad)


def test_rank_mismatch_is_rejected():
    with pytest.raises(ValueError, match="rank mismatch"):
        LoRAFactors(torch.zeros(2, 5), torch.zeros(7, 3), 1.0)


def test_rescale_alpha_keeps_the_effective_update():
    ad = random_adapter({"q": 4}, {"q": (6, 5)}, alpha=16.0)
    other = rescale_alpha(ad, 4.0)
    assert other.layers["q"].alpha == 4.0
    torch.testing.assert_close(other.delta("q"), ad.delta("q"), rtol=0, atol=1e-12)
