"""End-to-end decoder runs (task.kind causal_lm) of configs/decoder/tiny_llama.yaml: determinism, peft export,
heterogeneous ranks and asynchronous schedules."""

import pytest
import torch

from fedlora.config import load_config
from fedlora.experiment import deterministic_view, run_experiment
from fedlora.io.state import load_adapter

from .conftest import REPO

TINY_LLAMA = REPO / "configs" / "decoder" / "tiny_llama.yaml"


@pytest.fixture
def llama_config(glue_dir, tmp_path):
    def make(*overrides: str):
        return load_config(
            TINY_LLAMA, [f"task.data_dir={glue_dir}", f"output.dir={tmp_path}", "output.progress=false", *overrides]
        )

    return make


def test_a_causal_lm_run_is_deterministic_and_its_adapter_loads_with_peft(llama_config, tmp_path):
    from peft import PeftModel

    from fedlora.models.loading import load_causal_lm
    from fedlora.seeding import seed_torch

    cfg = llama_config()
    a = run_experiment(cfg, out=tmp_path / "a")
    b = run_experiment(cfg, out=tmp_path / "b")
    assert deterministic_view(a) == deterministic_view(b)
    assert a["totals"]["versions"] == 2
    final = a["history"][-1]["metrics"]
    assert {"accuracy", "f1", "loss", "perplexity"} <= set(final) and final["perplexity"] > 1

    # the exported adapter on a fresh AutoModelForCausalLM == the base with the global update merged in
    seed_torch(cfg.seed, "model-init")
    base = load_causal_lm(cfg.model.name, random_init=cfg.model.random_init, vocab_size=30522)
    loaded = PeftModel.from_pretrained(base, tmp_path / "a" / "adapter").eval()
    ids = torch.tensor([[101, 1996, 4937, 2938, 2006, 1996, 13523, 102]])
    with torch.no_grad():
        got = loaded(input_ids=ids).logits
    seed_torch(cfg.seed, "model-init")
    merged = load_causal_lm(cfg.model.name, random_init=cfg.model.random_init, vocab_size=30522)
    adapter = load_adapter(tmp_path / "a" / "global_adapter.safetensors")
    assert any(f.B.abs().sum() > 0 for f in adapter.layers.values())  # trained: the update is not zero
    with torch.no_grad():
        for name, f in adapter.layers.items():
            merged.get_submodule(name).weight += f.delta()
        torch.testing.assert_close(got, merged(input_ids=ids).logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "schedule",
    [
        "schedule={name: fedbuff, buffer_size: 2, concurrency: 3}",
        "schedule={name: fedasync, concurrency: 2}",
        "schedule={name: fedfa, window: 2, concurrency: 3}",
    ],
    ids=["fedbuff", "fedasync", "fedfa"],
)
def test_heterogeneous_ranks_and_asynchronous_schedules_run_on_a_decoder(llama_config, tmp_path, schedule):
    cfg = llama_config("aggregator.name=hlora", "clients.ranks.name=list", "clients.ranks.values=[1,2,4,4]", schedule)
    s = run_experiment(cfg, out=tmp_path / "run")
    assert s["totals"]["versions"] == 2
    assert 0.0 <= s["history"][-1]["metrics"]["accuracy"] <= 1.0


def test_noisy_owners_corrupt_prompts_and_answers_too(llama_config):
    """The noise partitioner's label flips change the answer a decoder trains on; shuffled texts are re-prompted."""
    from fedlora.data.prompts import prompt_spec, tokenize_prompts
    from fedlora.experiment import prepare_data
    from fedlora.models.loading import load_tokenizer

    cfg = llama_config("partition={name: noise, corrupt: both, shares: [0.5, 0.5, 0.5, 0.5]}")
    data = prepare_data(cfg)
    assert data.corruption.labels and data.corruption.texts
    for i, label in data.corruption.labels.items():
        labels = data.train.batch([i])["labels"]
        assert labels[labels != -100].tolist() == list(data.train.answer_ids[label])
    changed = sorted(data.corruption.texts)
    fresh = tokenize_prompts(load_tokenizer("minilm"), data.train_pairs.subset(changed), 96, prompt_spec("mrpc"))
    assert [data.train.input_ids[i] for i in changed] == fresh.input_ids
