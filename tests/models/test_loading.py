"""model.num_layers: a shallower model made of a pretrained model's first layers, with their own weights."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from fedlora.config import load_config
from fedlora.errors import ConfigError
from fedlora.models.loading import load_classifier

TINY = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny random BERT of 4 layers saved as a normal pretrained directory."""
    from fedlora.models.loading import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path("minilm"), num_labels=2, **TINY)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    path = tmp_path_factory.mktemp("bert4")
    model.save_pretrained(path)
    return path, model


def test_num_layers_keeps_the_first_layers_with_their_weights(pretrained):
    path, full = pretrained
    short = load_classifier(str(path), num_labels=2, num_layers=2)
    assert short.config.num_hidden_layers == 2
    assert len(short.bert.encoder.layer) == 2
    for i in range(2):
        for name, p in short.bert.encoder.layer[i].state_dict().items():
            torch.testing.assert_close(p, full.bert.encoder.layer[i].state_dict()[name], rtol=0, atol=0)
    torch.testing.assert_close(
        short.bert.embeddings.word_embeddings.weight, full.bert.embeddings.word_embeddings.weight, rtol=0, atol=0
    )


def test_num_layers_all_layers_equals_the_full_model(pretrained):
    path, _ = pretrained
    assert len(load_classifier(str(path), num_labels=2, num_layers=4).bert.encoder.layer) == 4
    assert len(load_classifier(str(path), num_labels=2).bert.encoder.layer) == 4


def test_num_layers_deeper_than_the_checkpoint_is_a_config_error(pretrained):
    path, _ = pretrained
    with pytest.raises(ConfigError, match=r"model.num_layers=5: the model has only 4 layers; give 1..4"):
        load_classifier(str(path), num_labels=2, num_layers=5)


def test_num_layers_with_random_init_is_rejected_at_validation(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: {name: mrpc}\n")
    with pytest.raises(ConfigError, match="model.num_layers keeps the first layers"):
        load_config(cfg, ["model.num_layers=2", "model.random_init={num_hidden_layers: 2}"])
    assert load_config(cfg, ["model.num_layers=3"]).model.num_layers == 3
    with pytest.raises(ConfigError, match="num_layers"):
        load_config(cfg, ["model.num_layers=0"])


def test_num_layers_cuts_a_decoder_too(tmp_path):
    from transformers import AutoModelForCausalLM

    from fedlora.models.loading import load_causal_lm
    from tests.conftest import TINY_LLAMA

    options = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    torch.manual_seed(0)
    full = AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", vocab_size=64, **options))
    full.save_pretrained(tmp_path)
    short = load_causal_lm(str(tmp_path), num_layers=1)
    assert len(short.model.layers) == 1
    for name, p in short.model.layers[0].state_dict().items():
        torch.testing.assert_close(p, full.model.layers[0].state_dict()[name], rtol=0, atol=0)
    torch.testing.assert_close(short.lm_head.weight, full.lm_head.weight, rtol=0, atol=0)
