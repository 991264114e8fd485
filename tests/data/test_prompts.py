"""Prompt tokenisation for decoder LMs: layout, answer-only labels, truncation, overrides and their errors."""

import dataclasses

import numpy as np
import pytest

from fedlora.config import load_config
from fedlora.data.glue import TextPairs
from fedlora.data.prompts import DEFAULT_PROMPTS, PromptSpec, parse_template, prompt_spec, tokenize_prompts
from fedlora.errors import ConfigError
from fedlora.models.loading import load_tokenizer

PAIRS = TextPairs(
    ["the cat sat on the mat", "a much longer first sentence " * 8], ["a cat was on a mat", "short"], [1, 0]
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def encode(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_prompt_is_template_filled_in_and_labels_mark_only_the_gold_answer(tokenizer):
    spec = prompt_spec("mrpc")
    data = tokenize_prompts(tokenizer, PAIRS, 128, spec)
    expected = [
        tokenizer.cls_token_id,
        *encode(tokenizer, spec.template.format(text_a="the cat sat on the mat", text_b="a cat was on a mat")),
    ]
    assert data.input_ids[0] == expected
    assert data.answer_ids == (tuple(encode(tokenizer, " no")), tuple(encode(tokenizer, " yes")))
    batch = data.batch([0, 1])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    n0 = len(data.input_ids[0]) + 1
    assert batch["input_ids"][0, :n0].tolist() == expected + list(data.answer_ids[1])  # label 1 -> " yes"
    assert batch["attention_mask"][0].sum() == n0 and batch["attention_mask"][0, :n0].all()  # right padding
    answer_positions = (batch["labels"] != -100).nonzero().tolist()
    assert answer_positions == [[0, n0 - 1], [1, len(data.input_ids[1])]]
    assert batch["labels"][1, len(data.input_ids[1])] == data.answer_ids[0][0]  # label 0 -> " no"
    np.testing.assert_array_equal(data.lengths, [len(p) + 1 for p in data.input_ids])


def test_a_candidate_answer_can_be_forced_and_a_label_flip_changes_the_trained_answer(tokenizer):
    data = tokenize_prompts(tokenizer, PAIRS, 128, prompt_spec("mrpc"))
    forced = data.encode([0, 1], answer=1)["labels"]
    assert sorted(forced[forced != -100].tolist()) == [data.answer_ids[1][0]] * 2
    flipped = dataclasses.replace(data, labels=np.array([0, 1]))  # as Corruption.apply_tokenized does
    got = flipped.batch([0, 1])["labels"]
    assert got[got != -100].tolist() == [data.answer_ids[0][0], data.answer_ids[1][0]]
    assert data.batch([0, 1])["labels"][got != -100].tolist() == [data.answer_ids[1][0], data.answer_ids[0][0]]


def test_truncation_cuts_the_sentences_only_and_every_sequence_fits_max_length(tokenizer):
    full = tokenize_prompts(tokenizer, PAIRS, 512, prompt_spec("rte"))
    cut = tokenize_prompts(tokenizer, PAIRS, 48, prompt_spec("rte"))
    assert cut.input_ids[0] == full.input_ids[0]  # short pair untouched
    assert max(cut.lengths) <= 48 and cut.lengths[1] == 48
    question = encode(tokenizer, "\nDoes the premise entail the hypothesis (yes or no)?")
    assert cut.input_ids[1][-len(question) :] == question  # the question survives; the long sentence is cut
    assert encode(tokenizer, " short")[0] in cut.input_ids[1]
    with pytest.raises(ConfigError, match="task.max_length=20 leaves no room for the sentences"):
        tokenize_prompts(tokenizer, PAIRS, 20, prompt_spec("rte"))


def test_rte_answers_follow_its_label_ids():
    assert DEFAULT_PROMPTS["rte"].answers == (" yes", " no")  # label 0 = entailment
    assert DEFAULT_PROMPTS["qqp"].answers == (" no", " yes")  # label 1 = duplicate


def test_template_and_answer_overrides_and_their_errors(tokenizer):
    spec = prompt_spec("qqp", "Q1={text_a} Q2={text_b} {{same}}?", ["false", "true"])
    assert spec == PromptSpec("Q1={text_a} Q2={text_b} {{same}}?", ("false", "true"))
    data = tokenize_prompts(tokenizer, PAIRS, 64, spec)
    assert data.input_ids[0][-4:] == encode(tokenizer, "{same}?")
    assert parse_template("A {text_b} B {text_a}") == [
        ("text", "A "),
        ("field", "text_b"),
        ("text", " B "),
        ("field", "text_a"),
    ]
    with pytest.raises(ConfigError, match=r"task.prompt.template: must contain \{text_a\} and \{text_b\}"):
        prompt_spec("mrpc", "only {text_a}")
    with pytest.raises(ConfigError, match=r"task.prompt.template: unknown placeholder \{sentence\}"):
        prompt_spec("mrpc", "{sentence} {text_a} {text_b}")
    with pytest.raises(ConfigError, match="task.prompt.answers: must be two different"):
        prompt_spec("mrpc", answers=["yes", "yes"])
    with pytest.raises(ConfigError, match="each answer needs its own non-empty token sequence"):
        tokenize_prompts(tokenizer, PAIRS, 64, PromptSpec("{text_a} {text_b}", (" ", "yes")))


def test_config_validates_kind_prompt_and_model_combinations():
    cfg = load_config(None, ["task.kind=causal_lm", "model.name=some/decoder", "task.prompt.answers=[' n', ' y']"])
    assert cfg.task.prompt.answers == [" n", " y"] and cfg.model.tokenizer is None
    with pytest.raises(ConfigError, match="task.kind=causal_lm needs a causal .decoder. LM, but model.name=minilm"):
        load_config(None, ["task.kind=causal_lm"])
    load_config(None, ["task.kind=causal_lm", "model.random_init={model_type: llama}"])  # from scratch: fine
    with pytest.raises(ConfigError, match="task.prompt: only task.kind=causal_lm uses a prompt"):
        load_config(None, ["task.prompt.template='{text_a} {text_b}'"])
    with pytest.raises(ConfigError, match="task.prompt.template: must contain"):
        load_config(None, ["task.kind=causal_lm", "model.name=x", "task.prompt.template=no fields"])
    with pytest.raises(ConfigError, match="model.random_init.model_type builds a decoder from scratch"):
        load_config(None, ["model.random_init={model_type: llama}"])
