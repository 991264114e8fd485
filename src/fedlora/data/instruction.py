"""`task.name: instruction`: instruction/response pairs for a decoder LM, in either of the common layouts.

- Columns (Alpaca, Dolly): an instruction, an optional input (Dolly calls it context) and a response.
- A `messages` column (the chat format of OpenAI, TRL and FlowerTune): a list of {role, content} ending in
  a user turn and the assistant's reply. The reply is trained on; everything before it is the prompt,
  earlier assistant turns included (they are context, not targets).

An optional `choices` column lists the candidate answers of a row (multiple choice); the response is then
one of them (its text, or its index), and evaluation also scores every choice (choice accuracy).

Each example keeps its request (`text_a`: the instruction, or the last user message) and its reference
response (`text_b`) as plain text, so partitioners that read or corrupt texts (quality, noise) work on
what a data owner wrote, and the prompt is rebuilt from them when a text changes (data/instruction_tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from fedlora.data.tabular import Table
from fedlora.errors import DataError

Style = Literal["columns", "messages"]
ROLES_KEYS = ("role", "content")


@dataclass(frozen=True)
class InstructionExamples:
    """One split, row-aligned; the interface of `glue.TextPairs` (text_a, text_b, labels, subset)."""

    text_a: list[str]  # the request: instruction, or the content of the last user message
    text_b: list[str]  # the reference response
    labels: list[int]  # index of the reference among `choices`; 0 without choices
    context: list[Any]  # columns: the input text ("" if none); messages: the conversation before the request
    choices: list[list[str]] | None
    style: Style
    columns: dict[str, list[Any]] = field(default_factory=dict)  # read by partitioners (e.g. the data owner)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> InstructionExamples:
        idx = [int(i) for i in indices]
        return InstructionExamples(
            [self.text_a[i] for i in idx],
            [self.text_b[i] for i in idx],
            [self.labels[i] for i in idx],
            [self.context[i] for i in idx],
            None if self.choices is None else [self.choices[i] for i in idx],
            self.style,
            {k: [v[i] for i in idx] for k, v in self.columns.items()},
        )

    def reference(self, i: int) -> str:
        """The response trained on: the labelled choice (a noisy owner's flipped label changes it), else text_b."""
        return self.choices[i][self.labels[i]] if self.choices is not None else self.text_b[i]


@dataclass(frozen=True)
class InstructionColumns:
    instruction: str
    input: str | None
    input_required: bool  # the user named the input column: a missing one is an error, not "no input"
    response: str
    messages: str | None
    choices: str | None


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _text(table: Table, column: str, row: int, v: Any, allow_empty: bool = False) -> str:
    if _missing(v) or (not allow_empty and isinstance(v, str) and not v.strip()):
        if allow_empty:
            return ""
        raise DataError(f"{table.source}: row {row} has no text in column {column!r}; fill it in or drop the row")
    return v if isinstance(v, str) else str(v)


def _conversation(table: Table, column: str, row: int, value: Any) -> tuple[list[dict[str, str]], str, str]:
    """(messages before the request, the request, the reply) of one `messages` cell."""
    fix = "each row needs a list of {role, content} messages ending in a user turn and the assistant's reply"
    if not isinstance(value, list) or not value:
        raise DataError(f"{table.source}: row {row}, column {column!r} is not a list of messages; {fix}")
    messages = []
    for m in value:
        if not isinstance(m, dict) or any(k not in m or _missing(m[k]) for k in ROLES_KEYS):
            raise DataError(f"{table.source}: row {row}, column {column!r}: a message lacks role or content; {fix}")
        messages.append({"role": str(m["role"]), "content": str(m["content"])})
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
        roles = ", ".join(m["role"] for m in messages)
        raise DataError(f"{table.source}: row {row}, column {column!r} has roles [{roles}]; {fix}")
    return messages[:-2], messages[-2]["content"], messages[-1]["content"]


def _choices(table: Table, column: str, row: int, value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) < 2 or any(_missing(c) for c in value):
        raise DataError(
            f"{table.source}: row {row}, column {column!r} must list two or more answer texts; fix the row, or "
            "set task.columns.choices: null"
        )
    out = [str(c) for c in value]
    if len(set(out)) != len(out):
        raise DataError(f"{table.source}: row {row}, column {column!r} lists an answer twice ({out}); remove one")
    return out


def _gold(table: Table, column: str, row: int, response: Any, choices: list[str]) -> int:
    """The reference's index among the row's choices: the response is a choice's text or its index."""
    if isinstance(response, int) and not isinstance(response, bool) and 0 <= response < len(choices):
        return response
    text = str(response).strip()
    stripped = [c.strip() for c in choices]
    if text in stripped:
        return stripped.index(text)
    raise DataError(
        f"{table.source}: row {row}: the response {text!r} in column {column!r} is none of the choices "
        f"{choices}; give one choice's text or index"
    )


def load_instructions(
    table: Table, cols: InstructionColumns, extra_columns: tuple[str, ...] = ()
) -> InstructionExamples:
    """Every row of `table` as an instruction example (see the module docstring for the two layouts)."""
    n = len(table)
    requests: list[str] = []
    responses: list[str] = []
    context: list[Any] = []
    if cols.messages is not None:
        style: Style = "messages"
        for row, value in enumerate(table.column(cols.messages, "task.columns.messages"), start=1):
            history, request, reply = _conversation(table, cols.messages, row, value)
            context.append(history)
            requests.append(request)
            responses.append(reply)
        raw_responses: list[Any] = list(responses)
        response_column = cols.messages
    else:
        style = "columns"
        response_column = cols.response
        raw_responses = table.column(cols.response, "task.columns.response")
        for row, v in enumerate(table.column(cols.instruction, "task.columns.instruction"), start=1):
            requests.append(_text(table, cols.instruction, row, v))
        if cols.input is not None and (cols.input_required or cols.input in table.columns):
            inputs = table.column(cols.input, "task.columns.input")
            context = [_text(table, cols.input, r, v, allow_empty=True) for r, v in enumerate(inputs, 1)]
        else:
            context = [""] * n
        if cols.choices is None:
            responses = [_text(table, cols.response, r, v) for r, v in enumerate(raw_responses, 1)]
    choices = None
    labels = [0] * n
    if cols.choices is not None:
        cells = table.column(cols.choices, "task.columns.choices")
        choices = [_choices(table, cols.choices, row, v) for row, v in enumerate(cells, start=1)]
        pairs = enumerate(zip(raw_responses, choices, strict=True), start=1)
        labels = [_gold(table, response_column, r, v, c) for r, (v, c) in pairs]
        responses = [c[k] for c, k in zip(choices, labels, strict=True)]
    extra = {c: table.filled(c, "partition.column") for c in extra_columns}
    return InstructionExamples(requests, responses, labels, context, choices, style, extra)
