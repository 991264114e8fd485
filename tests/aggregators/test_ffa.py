"""FFA-LoRA: A frozen at a shared seeded initialisation, only B averaged."""

import pytest
import torch

from fedlora import get_aggregator
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.init import fresh_adapter
from tests.aggregators.common import SHAPES, dense_sum


def trained(agg, rank, seed):
    """What an FFA client sends back: the distributed A untouched, B moved."""
    start = agg.distribute(fresh_adapter(SHAPES, agg.rank, 8.0, torch.Generator().manual_seed(0)), rank, 8.0)
    g = torch.Generator().manual_seed(seed)
    layers = {n: LoRAFactors(f.A, torch.randn(f.B.shape, generator=g), f.alpha) for n, f in start.layers.items()}
    return Adapter(layers=layers, extras={"h": torch.randn(3, generator=g)})


def test_ffa_keeps_the_shared_A_and_is_exact_for_mixed_ranks():
    agg = get_aggregator("ffa", rank=4)
    terms = [(0.5, trained(agg, 4, 1)), (0.3, trained(agg, 2, 2)), (0.2, trained(agg, 1, 3))]
    out = agg.combine(terms)
    for name, f in out.layers.items():
        torch.testing.assert_close(f.A, agg.shared_A(name, f.d_in))
        torch.testing.assert_close(out.delta(name, torch.float64), dense_sum(terms, name), rtol=0, atol=1e-5)
    assert agg.last_diagnostics["rel_error"] < 1e-6  # averaging B is exact when A is shared
    client = agg.distribute(out, rank=2, alpha=8.0)
    for name, f in client.layers.items():
        torch.testing.assert_close(f.A, agg.shared_A(name, f.d_in)[:2])


def test_ffa_shared_A_is_a_pure_function_of_seed_and_layer():
    a, b = get_aggregator("ffa", rank=4), get_aggregator("ffa", rank=4)
    torch.testing.assert_close(a.shared_A("attn.q", 7), b.shared_A("attn.q", 7))
    assert not torch.allclose(a.shared_A("attn.q", 7), get_aggregator("ffa", rank=4, seed=1).shared_A("attn.q", 7))
    assert a.trains(0) == "B" and a.trains(7) == "B"  # FFA-LoRA trains B only, every version


def test_ffa_rejects_a_trained_A():
    agg = get_aggregator("ffa", rank=2)
    bad = trained(agg, 2, 1).map(lambda t: t + 0.1)
    with pytest.raises(ValueError, match="frozen"):
        agg.combine([(1.0, bad)])
