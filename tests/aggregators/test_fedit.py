import pytest
import torch

from fedlora import get_aggregator
from fedlora.errors import ConfigError
from tests.lora.test_adapter import random_adapter

SHAPES = {"attn.q": (6, 4), "attn.v": (3, 8)}  # d_out != d_in catches transposes


def test_fedit_equals_float64_weighted_average_of_factors():
    adapters = [random_adapter({"attn.q": 3, "attn.v": 3}, SHAPES, alpha=6.0, seed=s) for s in range(4)]
    weights = [0.1, 0.2, 0.3, 0.4]
    out = get_aggregator("fedit", rank=3).combine(list(zip(weights, adapters, strict=True)))
    for name in SHAPES:
        A = sum(w * a.layers[name].A.double() for w, a in zip(weights, adapters, strict=True))
        B = sum(w * a.layers[name].B.double() for w, a in zip(weights, adapters, strict=True))
        torch.testing.assert_close(out.layers[name].A.double(), A, rtol=0, atol=1e-12)
        torch.testing.assert_close(out.layers[name].B.double(), B, rtol=0, atol=1e-12)
        assert out.layers[name].alpha == 6.0
        # the product of averages is what FedIT hands on: (alpha/r) B_avg A_avg
        torch.testing.assert_close(out.delta(name), 2.0 * B @ A, rtol=0, atol=1e-10)
    head = sum(w * a.extras["head.weight"].double() for w, a in zip(weights, adapters, strict=True))
    torch.testing.assert_close(out.extras["head.weight"].double(), head, rtol=0, atol=1e-6)


def test_fedit_supports_negative_weights():
    a, b = (random_adapter({"attn.q": 2, "attn.v": 2}, SHAPES, alpha=2.0, seed=s) for s in (1, 2))
    out = get_aggregator("fedit", rank=2).combine([(1.0, a), (0.5, b), (-0.5, b)])
    assert out.allclose(a.map(lambda t: t), atol=1e-12)


def test_fedit_refuses_mixed_ranks_with_a_pointer_to_hlora():
    a = random_adapter({"attn.q": 2, "attn.v": 2}, SHAPES, alpha=2.0)
    b = random_adapter({"attn.q": 4, "attn.v": 4}, SHAPES, alpha=2.0)
    with pytest.raises(ConfigError, match="hlora"):
        get_aggregator("fedit", rank=4).combine([(0.5, a), (0.5, b)])


def test_unknown_aggregator_lists_the_choices():
    with pytest.raises(ConfigError, match="aggregator.name: unknown aggregator 'nope'; choose one of: .*fedit"):
        get_aggregator("nope", rank=2)
