"""task.name instruction: Alpaca/Dolly columns and a messages column load into the same examples; choices
give each row its gold index; malformed rows are one line naming the file, the column and the fix."""

import pytest

from fedlora.data.examples import as_messages, instruction_rows, write_rows
from fedlora.data.instruction import InstructionColumns, load_instructions
from fedlora.data.tabular import Table, read_file
from fedlora.errors import DataError

ALPACA = InstructionColumns("instruction", "input", False, "output", None, None)
MESSAGES = InstructionColumns("instruction", "input", False, "output", "messages", None)


def test_alpaca_columns_and_messages_give_the_same_requests_and_responses(tmp_path):
    train, _ = instruction_rows()
    columns = load_instructions(read_file(write_rows(tmp_path / "a.jsonl", train)), ALPACA, ("user_id",))
    chat = load_instructions(read_file(write_rows(tmp_path / "m.jsonl", as_messages(train))), MESSAGES)
    assert columns.style == "columns" and chat.style == "messages"
    assert len(columns) == len(chat) == len(train)
    assert columns.text_a[0] == train[0]["instruction"] and columns.context[0] == train[0]["input"]
    assert columns.text_b == chat.text_b == [r["output"] for r in train]
    assert chat.text_a[0] == f"{train[0]['instruction']}\n\n{train[0]['input']}" and chat.context[0] == []
    assert columns.labels == [0] * len(train) and columns.choices is None
    assert columns.columns["user_id"][:2] == [train[0]["user_id"], train[1]["user_id"]]


def test_dolly_columns_and_a_missing_optional_input():
    dolly = Table(
        "dolly.jsonl",
        {"instruction": ["Name a color", "Summarise"], "context": ["", "A long text."], "response": ["red", "Short."]},
    )
    cols = InstructionColumns("instruction", "context", True, "response", None, None)
    ex = load_instructions(dolly, cols)
    assert ex.context == ["", "A long text."] and ex.text_b == ["red", "Short."]
    # the default input column may be absent: no input
    no_input = Table("a.csv", {"instruction": ["Name a color"], "output": ["red"]})
    assert load_instructions(no_input, ALPACA).context == [""]
    # a named input column must exist
    named = InstructionColumns("instruction", "context", True, "output", None, None)
    with pytest.raises(DataError, match=r"a.csv: no column 'context'.*task.columns.input"):
        load_instructions(no_input, named)


def test_choices_give_the_gold_index_by_text_or_number():
    table = Table(
        "mc.jsonl",
        {
            "instruction": ["Even or odd?", "Even or odd?"],
            "input": ["4", "7"],
            "output": ["even", 1],  # a choice's text, or its index
            "choices": [["even", "odd"], ["even", "odd"]],
        },
    )
    ex = load_instructions(table, InstructionColumns("instruction", "input", False, "output", None, "choices"))
    assert ex.labels == [0, 1] and ex.text_b == ["even", "odd"] and ex.reference(1) == "odd"
    flipped = ex.subset([1])
    assert flipped.choices == [["even", "odd"]]
    bad = Table("mc.jsonl", {**table.columns, "output": ["maybe", "odd"]})
    with pytest.raises(DataError, match=r"mc.jsonl: row 1: the response 'maybe' in column 'output' is none of"):
        load_instructions(bad, InstructionColumns("instruction", "input", False, "output", None, "choices"))


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "user", "content": "hi"}], "has roles [user]"),
        ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}], "has roles [assistant, user]"),
        ([{"role": "user"}, {"role": "assistant", "content": "a"}], "a message lacks role or content"),
        ("hello", "is not a list of messages"),
    ],
)
def test_malformed_conversations_are_refused(messages, expected):
    table = Table("chat.jsonl", {"messages": [messages]})
    with pytest.raises(DataError) as exc:
        load_instructions(table, MESSAGES)
    msg = str(exc.value)
    assert "\n" not in msg and "chat.jsonl: row 1, column 'messages'" in msg and expected in msg
    assert "ending in a user turn and the assistant's reply" in msg


def test_empty_responses_and_missing_columns():
    table = Table("a.csv", {"instruction": ["x", "y"], "output": ["ok", " "]})
    with pytest.raises(DataError, match=r"a.csv: row 2 has no text in column 'output'"):
        load_instructions(table, ALPACA)
    with pytest.raises(DataError, match=r"a.csv: no column 'messages'.*task.columns.messages"):
        load_instructions(table, MESSAGES)
