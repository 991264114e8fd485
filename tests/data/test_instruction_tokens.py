"""Instruction examples as prompt + response ids: the loss covers the response only (EOS or end of turn
included), templates and chat templates are cut into literals and contents so truncation never cuts the
template, and corruption (noise) re-tokenises responses too."""

import dataclasses

import numpy as np
import pytest

from fedlora.data.instruction import InstructionExamples
from fedlora.data.instruction_tokens import check_template, fit_lengths, tokenize_instructions
from fedlora.data.partitioners import Corruption
from fedlora.errors import ConfigError, DataError

# a chat template a BERT wordpiece tokenizer can write (it has none of its own)
CHAT = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} [end] {% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


@pytest.fixture(scope="module")
def tok():
    from fedlora.models.loading import load_tokenizer

    t = load_tokenizer("minilm")
    t.eos_token = "[SEP]"  # stands in for a decoder's EOS
    return t


def columns(requests, responses, inputs=None, choices=None, labels=None) -> InstructionExamples:
    n = len(requests)
    return InstructionExamples(
        list(requests), list(responses), labels or [0] * n, inputs or [""] * n, choices, "columns"
    )


def words(tok, ids) -> str:
    return tok.decode(ids)


def test_the_loss_covers_the_response_and_its_eos_only(tok):
    ex = columns(["Add the two numbers.", "Spell the word backwards."], ["42", "tenalp"], ["17 and 25", ""])
    data = tokenize_instructions(tok, ex, 128)
    batch = data.batch([0, 1])
    for row in range(2):
        labelled = batch["labels"][row][batch["labels"][row] != -100].tolist()
        assert labelled == list(data.candidates[row][0])
        assert labelled[-1] == tok.sep_token_id  # the EOS that ends the reply
        assert words(tok, labelled[:-1]) == ex.text_b[row]
    with_input = words(tok, data.input_ids[0])
    assert with_input.startswith("[CLS] below is an instruction that describes a task, paired with an input")
    assert "# # # input : 17 and 25" in with_input and with_input.endswith("# # # response :")
    assert "input" not in words(tok, data.input_ids[1]).split("instruction :")[1]  # Alpaca's no-input prompt
    assert data.lengths.tolist() == [len(p) + len(c[0]) for p, c in zip(data.input_ids, data.candidates, strict=True)]


def test_a_custom_template_moves_its_trailing_space_onto_the_reply(tok):
    check_template("Q: {instruction} ({input}) A: ")
    with pytest.raises(ValueError, match="template:"):
        check_template("Q: {question}")
    ex = columns(["capital of france"], ["paris"])
    data = tokenize_instructions(tok, ex, 64, template="Q: {instruction} A: ")
    assert words(tok, data.input_ids[0]) == "[CLS] q : capital of france a :"
    assert words(tok, data.candidates[0][0]) == "paris [SEP]"


def test_messages_use_the_chat_template_and_history_is_context(tok):
    history = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    ex = InstructionExamples(["what is two plus two"], ["four"], [0], [history], None, "messages")
    data = tokenize_instructions(tok, ex, 128, chat_template=CHAT)
    prompt = words(tok, data.input_ids[0])
    assert prompt == (
        "[ system ] be brief [ end ] [ user ] hi [ end ] [ assistant ] hello [ end ] "
        "[ user ] what is two plus two [ end ] [ assistant ]"
    )
    assert words(tok, data.candidates[0][0]) == "four [ end ]"  # the template's end of turn, not EOS
    with pytest.raises(ConfigError, match=r"task.chat_template: .* has no chat template"):
        tokenize_instructions(tok, ex, 128)
    twice = (  # writes every user and system message twice
        "{% for m in messages %}{% if m['role'] == 'assistant' %}A: {{ m['content'] }}{% else %}"
        "{{ m['content'] }} {{ m['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}A: {% endif %}"
    )
    with pytest.raises(ConfigError, match="not each once"):
        tokenize_instructions(tok, ex, 128, chat_template=twice)


def test_truncation_cuts_contents_longest_first_and_keeps_the_template(tok):
    assert fit_lengths([10, 3, 50], 30) == [10, 3, 17]
    assert fit_lengths([5, 5], 20) == [5, 5] and sum(fit_lengths([9, 9, 9], 10)) == 10
    long_input = " ".join(["word"] * 300)
    ex = columns(["summarise this text"], ["short"], [long_input])
    data = tokenize_instructions(tok, ex, 96)
    assert data.lengths[0] == 96 and data.complete == [True]
    prompt = words(tok, data.input_ids[0])
    assert prompt.startswith("[CLS] below is") and prompt.endswith("# # # response :")
    assert "summarise this text" in prompt  # the short instruction is whole; the long input was cut
    long_reply = columns(["write a lot"], [" ".join(["yes"] * 200)])
    data = tokenize_instructions(tok, long_reply, 96)
    assert data.lengths[0] <= 96 and data.complete == [False]
    assert len(data.candidates[0][0]) >= (96 - len(data.input_ids[0])) // 2
    with pytest.raises(ConfigError, match="task.max_length=16 leaves no room"):
        tokenize_instructions(tok, ex, 16)


def test_choices_are_candidates_and_a_label_flip_switches_the_reply(tok):
    ex = columns(["even or odd?", "even or odd?"], ["even", "odd"], ["4", "7"], [["even", "odd"]] * 2, [0, 1])
    data = tokenize_instructions(tok, ex, 64)
    assert data.has_choices and [len(c) for c in data.candidates] == [2, 2]
    flipped = dataclasses.replace(data, labels=np.array([1, 0]))
    labelled = flipped.batch([0])["labels"][0]
    assert words(tok, labelled[labelled != -100].tolist()) == "odd [SEP]"
    with pytest.raises(DataError, match="same number of choices"):
        dataclasses.replace(data, labels=np.array([2, 0]))


def test_a_text_shuffle_retokenises_prompt_and_response(tok):
    ex = columns(["spell the word backwards please", "add two numbers now"], ["abc def ghi", "one two three"])
    tokenize = lambda e: tokenize_instructions(tok, e, 64)  # noqa: E731
    data = tokenize(ex)
    corruption = Corruption(texts={1: ("now numbers add two", "three one two")})
    corrupted = corruption.apply(ex)
    assert corrupted.text_b == ["abc def ghi", "three one two"] and corrupted.context == ex.context
    fresh = corruption.apply_tokenized(data, corrupted, tokenize)
    assert fresh.input_ids[0] == data.input_ids[0] and fresh.candidates[0] == data.candidates[0]
    assert words(tok, fresh.candidates[1][0]) == "three one two [SEP]"
    assert "now numbers add two" in words(tok, fresh.input_ids[1])
