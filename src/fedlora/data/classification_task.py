"""`task.name: text_classification`: any labelled text, one or two text columns, any number of classes.

Labels become ids 0..K-1 in a stable order that is recorded with the run (partition.json, `label_names`):
the order of `task.labels` when given, else the sorted distinct training labels (numerically when every
label is an integer, so 1..10 stars stay in order; as text otherwise). Sorting, not first appearance, keeps
the ids unchanged when the file's rows are reordered or subsampled. GLUE's RTE as strings therefore maps
entailment -> 0, not_entailment -> 1, as the GLUE loader does.

Metrics: accuracy and macro-F1 (every class counts equally, whatever its size); with two classes also
binary F1 of label id 1 (the second label in that order), as GLUE reports for MRPC and QQP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fedlora.data.tabular import Table, cell_key, natural_order
from fedlora.errors import DataError


@dataclass(frozen=True)
class LabelledTexts:
    """One split: one or two texts per row (text_b None for single texts), the label id, and the columns a
    partitioner reads (e.g. the data owner), row-aligned. The interface of `glue.TextPairs`."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[int]
    columns: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> LabelledTexts:
        idx = [int(i) for i in indices]
        return LabelledTexts(
            [self.text_a[i] for i in idx],
            None if self.text_b is None else [self.text_b[i] for i in idx],
            [self.labels[i] for i in idx],
            {k: [v[i] for i in idx] for k, v in self.columns.items()},
        )


@dataclass(frozen=True)
class ClassificationData:
    train: LabelledTexts
    dev: LabelledTexts
    label_names: tuple[str, ...]  # label_names[k]: the label whose id is k
    metric_names: tuple[str, ...]


def text_column(table: Table, column: str, field_name: str) -> list[str]:
    values = table.column(column, field_name)
    out = []
    for row, v in enumerate(values, start=1):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise DataError(f"{table.source}: row {row} has no text in column {column!r}; fill it in or drop the row")
        out.append(v if isinstance(v, str) else str(v))
    return out


def label_names_of(table: Table, column: str) -> list[str]:
    names = []
    for row, v in enumerate(table.column(column, "task.columns.label"), start=1):
        name = cell_key(v)
        if name is None:
            raise DataError(f"{table.source}: row {row} has no label in column {column!r}; fill it in or drop the row")
        names.append(name)
    return names


def load_classification(
    train: Table,
    dev: Table,
    text_columns: Sequence[str],
    label_column: str,
    labels: Sequence[str] | None = None,
    extra_columns: Sequence[str] = (),
    extra_field: str = "partition.column",
) -> ClassificationData:
    """Both splits as label ids in one order (see the module docstring); `extra_columns` ride along."""
    train_names = label_names_of(train, label_column)
    dev_names = label_names_of(dev, label_column)
    if len(set(train_names)) < 2:
        raise DataError(
            f"{train.source}: column {label_column!r} holds one class ({train_names[0]!r}) in the training rows; "
            "a classifier needs two or more: set task.columns.label to the label column, or add rows of other "
            "classes"
        )
    order = [str(v) for v in labels] if labels is not None else natural_order(train_names)
    ids = {name: k for k, name in enumerate(order)}
    for table, names in ((train, train_names), (dev, dev_names)):
        for row, name in enumerate(names, start=1):
            if name not in ids:
                where = "task.labels" if labels is not None else "the training rows"
                raise DataError(
                    f"{table.source}: row {row} has label {name!r} in column {label_column!r}, which is not among "
                    f"{where} ({', '.join(order)}); fix the value, or list every class in task.labels"
                )

    def split(table: Table, names: list[str]) -> LabelledTexts:
        a = text_column(table, text_columns[0], "task.columns.text")
        b = text_column(table, text_columns[1], "task.columns.text") if len(text_columns) > 1 else None
        extra = {c: table.filled(c, extra_field) for c in extra_columns} if table is train else {}
        return LabelledTexts(a, b, [ids[n] for n in names], extra)

    metrics = ("accuracy", "macro_f1", "f1") if len(order) == 2 else ("accuracy", "macro_f1")
    return ClassificationData(split(train, train_names), split(dev, dev_names), tuple(order), metrics)
