import pytest
import torch

from fedlora import Adapter
from fedlora.errors import ConfigError
from fedlora.models.loading import load_classifier, load_tokenizer
from fedlora.training.host import ModelHost

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def tiny_host(max_rank: int = 8) -> ModelHost:
    torch.manual_seed(0)
    model = load_classifier("minilm", num_labels=2, random_init=TINY)
    return ModelHost(model, ["query", "value"], alpha=16.0, dropout=0.0, train_head=True, max_rank=max_rank)


def random_adapter_for(host: ModelHost, rank: int, seed: int) -> Adapter:
    g = torch.Generator().manual_seed(seed)
    factors = {
        n: (torch.randn(rank, d_in, generator=g), torch.randn(d_out, rank, generator=g))
        for n, (d_out, d_in) in host.layer_shapes.items()
    }
    extras = {k: torch.randn(v.shape, generator=g) for k, v in host.head_template().items()}
    return Adapter.from_factors(factors, alpha=4.0 * rank, extras=extras)


def test_layer_shapes_and_head_are_discovered():
    host = tiny_host()
    assert len(host.layer_shapes) == 4  # 2 layers x (query, value)
    assert all(shape == (32, 32) for shape in host.layer_shapes.values())
    assert set(host.head_template()) == {"classifier.weight", "classifier.bias"}


@pytest.mark.parametrize("rank", [1, 2, 8, 16])
def test_load_then_extract_round_trips_at_any_rank(rank):
    host = tiny_host(max_rank=16)
    ad = random_adapter_for(host, rank, seed=rank)
    slot = host.load(ad)
    assert slot == f"rank_{rank}"
    assert host.extract(slot).allclose(ad)


def test_loaded_adapter_acts_as_its_effective_update_merged_into_the_base(tokenizer):
    """Model + adapter == base with W + (alpha/r) B A merged in (same head): checks scaling and transposes."""
    batch = tokenizer(["a short sentence"], ["another one"], return_tensors="pt")
    host = tiny_host()
    ad = random_adapter_for(host, 4, seed=1)
    host.load(ad)
    with torch.no_grad():
        with_adapter = host.model(**batch).logits

    merged_host = tiny_host()
    zero_lora = Adapter.from_factors(
        {n: (torch.zeros_like(f.A), torch.zeros_like(f.B)) for n, f in ad.layers.items()}, alpha=16.0, extras=ad.extras
    )
    merged_host.load(zero_lora)
    with torch.no_grad():
        base = merged_host.model.get_base_model()
        for name, f in ad.layers.items():
            base.get_submodule(name).get_base_layer().weight += f.delta()
        merged = merged_host.model(**batch).logits
    torch.testing.assert_close(with_adapter, merged, rtol=1e-4, atol=1e-5)


def test_rank_above_the_layer_width_is_a_config_error():
    with pytest.raises(ConfigError, match="lora.rank=64 exceeds the narrowest adapted layer's width 32"):
        tiny_host(max_rank=64)
    host = tiny_host()
    with pytest.raises(ConfigError, match="clients.ranks: rank 40 is outside 1..32"):
        host.check_rank(40)


def test_peft_export_loads_with_peft_model_from_pretrained(tmp_path, tokenizer):
    from peft import PeftModel

    host = tiny_host()
    ad = random_adapter_for(host, 8, seed=3)
    host.save_peft(ad, tmp_path / "adapter")
    host.load(ad)
    batch = tokenizer(["the cat sat"], ["on the mat"], return_tensors="pt")
    with torch.no_grad():
        expected = host.model(**batch).logits
    torch.manual_seed(0)
    base = load_classifier("minilm", num_labels=2, random_init=TINY)
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    loaded.eval()
    with torch.no_grad():
        got = loaded(**batch).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
