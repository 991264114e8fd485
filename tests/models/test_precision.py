"""A low-precision frozen base with float32 adapters and head; and what feeds the classifier (pooling)."""

import numpy as np
import pytest
import torch

from fedlora.models.loading import load_classifier, load_tokenizer
from fedlora.training.host import ModelHost
from tests.conftest import run_killed

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def host_for(dtype="float32", pooling="cls"):
    from fedlora.models.pooling import trainable_modules

    torch.manual_seed(0)
    model = load_classifier("minilm", num_labels=2, random_init=TINY, dtype=dtype, pooling=pooling)
    return ModelHost(
        model, ["query", "value"], 16.0, 0.0, True, 4, extra_trainables=tuple(trainable_modules(model, pooling))
    )


def test_bfloat16_base_keeps_adapters_and_head_in_float32_and_trains(tokenizer):
    host = host_for("bfloat16")
    base = host.model.base_model.model
    assert base.bert.encoder.layer[0].attention.self.query.base_layer.weight.dtype == torch.bfloat16
    slot = host.ensure_slot(4)
    adapter = host.extract(slot)
    assert all(f.A.dtype == torch.float32 and f.B.dtype == torch.float32 for f in adapter.layers.values())
    assert all(t.dtype == torch.float32 for t in adapter.extras.values())
    batch = tokenizer(["a short one", "and a rather longer sentence here"], padding=True, return_tensors="pt")
    out = host.model(**batch, labels=torch.tensor([0, 1]))
    assert out.logits.dtype == torch.float32
    out.loss.backward()
    lora, head = host.trainable(slot)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lora + head if p.requires_grad)


def test_mean_pooling_is_the_masked_mean_and_ignores_padding(tokenizer):
    host = host_for(pooling="mean")
    model = host.model.base_model.model
    captured = {}
    model.classifier.register_forward_pre_hook(lambda m, args: captured.__setitem__("x", args[0].detach()))
    alone = tokenizer(["the cat sat"], return_tensors="pt")
    padded = tokenizer(
        ["the cat sat", "a much longer second sentence with many more tokens"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        model(**alone)
        pooled_alone = captured["x"][0].clone()
        hidden = model.bert(**alone).last_hidden_state[0]
        model(**padded)
    torch.testing.assert_close(pooled_alone, hidden.mean(0))
    torch.testing.assert_close(captured["x"][0], pooled_alone, rtol=1e-4, atol=1e-5)


def test_a_trained_pooler_travels_with_the_head():
    host = host_for(pooling="cls_trained")
    assert {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight"} <= set(host.head_template())
    assert set(host_for().head_template()) == {"classifier.weight", "classifier.bias"}


def test_same_seed_same_numbers_with_bfloat16_and_length_grouping(tiny_config, tmp_path):
    from fedlora.experiment import deterministic_view, run_experiment

    sets = (
        "model.dtype=bfloat16",
        "model.pooling=mean",
        "training.group_by_length=true",
        "training.lr_schedule=cosine",
        "training.warmup_ratio=0.2",
    )
    a = run_experiment(tiny_config(*sets), out=tmp_path / "a")
    b = run_experiment(tiny_config(*sets), out=tmp_path / "b")
    assert deterministic_view(a) == deterministic_view(b)
    assert np.isfinite(a["final"]["metrics"]["loss"])
    run_killed(tiny_config(*sets), tmp_path / "killed", at_version=2)
    resumed = run_experiment(tiny_config(*sets), out=tmp_path / "killed", resume=True)
    assert deterministic_view(resumed) == deterministic_view(a)
