"""Evaluation per example, metrics per subset: one batched pass gives every client's metrics."""

import numpy as np
import pytest
import torch

from fedlora.data.glue import load_glue
from fedlora.data.prompts import prompt_spec, tokenize_prompts
from fedlora.data.tokenized import tokenize_pairs
from fedlora.lora.init import fresh_adapter
from fedlora.models.loading import load_causal_lm, load_classifier, load_tokenizer
from fedlora.seeding import torch_generator
from fedlora.training.evaluate import evaluate, evaluate_groups
from fedlora.training.host import ModelHost

from ..conftest import TINY_LLAMA

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
GROUPS = [np.array([0, 5, 9, 17]), np.array([], dtype=np.int64), np.array([1, 2, 3, 30, 31]), np.arange(10, 16)]


def classifier_case(tokenizer, pairs):
    torch.manual_seed(0)
    host = ModelHost(load_classifier("minilm", 2, random_init=TINY), ["query", "value"], 8.0, 0.0, True, 4)
    return host, tokenize_pairs(tokenizer, pairs, 64), ("accuracy", "f1")


def causal_case(tokenizer, pairs):
    torch.manual_seed(0)
    model = load_causal_lm("tiny", random_init=TINY_LLAMA, vocab_size=len(tokenizer))
    host = ModelHost(model, ["q_proj", "v_proj"], 8.0, 0.0, True, 4, task_type="CAUSAL_LM")
    return host, tokenize_prompts(tokenizer, pairs, 64, prompt_spec("mrpc")), ("accuracy", "f1")


@pytest.mark.parametrize("case", [classifier_case, causal_case], ids=["classification", "causal_lm"])
def test_each_groups_metrics_equal_evaluating_that_group_alone(glue_dir, case):
    tokenizer = load_tokenizer("minilm")
    pairs = load_glue("mrpc", "dev", glue_dir).subset(range(32))
    host, data, names = case(tokenizer, pairs)
    adapter = fresh_adapter(host.layer_shapes, 4, 8.0, torch_generator(0, "t"), extras=host.head_template())
    for f in adapter.layers.values():  # a non-zero update, so the adapter matters
        f.B.normal_(generator=torch_generator(1, "t"))
    together = evaluate_groups(host, adapter, data, GROUPS, batch_size=8, metric_names=names)
    assert together[1] is None
    for group, got in zip(GROUPS, together, strict=True):
        if len(group):
            alone = evaluate(host, adapter, data, 8, names, indices=group)
            assert set(got) == set(alone)
            for k in alone:
                assert got[k] == pytest.approx(alone[k], rel=1e-5, abs=1e-6), k
