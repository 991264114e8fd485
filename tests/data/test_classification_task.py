"""task.name text_classification: string labels in a recorded, stable order; any number of classes; one or
two text columns; label errors name the file, the column and the fix."""

import pytest

from fedlora.data.classification_task import load_classification
from fedlora.data.tabular import Table
from fedlora.errors import DataError

TRAIN = Table(
    "train.csv",
    {
        "text": ["refund please", "app crashes", "how do I export", "charged twice", "blank screen", "where is it"],
        "label": ["billing", "bug", "question", "billing", "bug", "question"],
        "user_id": ["u1", "u1", "u2", "u2", "u3", "u3"],
    },
)
DEV = Table("validation.csv", {"text": ["crash on start", "wrong invoice"], "label": ["bug", "billing"]})


def test_three_string_labels_get_sorted_ids_and_macro_f1():
    data = load_classification(TRAIN, DEV, ["text"], "label", extra_columns=["user_id"])
    assert data.label_names == ("billing", "bug", "question")
    assert data.train.labels == [0, 1, 2, 0, 1, 2] and data.dev.labels == [1, 0]
    assert data.train.text_b is None  # one text column: single texts
    assert data.metric_names == ("accuracy", "macro_f1")  # no binary F1 for three classes
    assert data.train.columns == {"user_id": ["u1", "u1", "u2", "u2", "u3", "u3"]}
    # the order does not depend on the order of the rows
    shuffled = TRAIN.take([5, 4, 3, 2, 1, 0])
    assert load_classification(shuffled, DEV, ["text"], "label").label_names == data.label_names
    # a subset keeps the owner column aligned
    sub = data.train.subset([4, 0])
    assert sub.labels == [1, 0] and sub.columns["user_id"] == ["u3", "u1"]


def test_an_explicit_label_order_and_integer_labels():
    data = load_classification(TRAIN, DEV, ["text"], "label", labels=["question", "bug", "billing"])
    assert data.label_names == ("question", "bug", "billing") and data.train.labels[:3] == [2, 1, 0]
    stars = Table("s.jsonl", {"text": ["a", "b", "c", "d"], "label": [10, 2, 1, 2]})
    data = load_classification(stars, stars, ["text"], "label")
    assert data.label_names == ("1", "2", "10")  # numeric order, not "1" < "10" < "2"
    assert data.train.labels == [2, 1, 0, 1]


def test_two_text_columns_are_a_pair_and_two_classes_add_binary_f1():
    pairs = Table("rte.jsonl", {"s1": ["a", "b"], "s2": ["c", "d"], "label": ["not_entailment", "entailment"]})
    data = load_classification(pairs, pairs, ["s1", "s2"], "label")
    assert data.train.text_b == ["c", "d"] and data.train.labels == [1, 0]
    assert data.metric_names == ("accuracy", "macro_f1", "f1")


def test_a_label_column_with_one_class_is_refused():
    one = Table("train.csv", {"text": ["a", "b", "c"], "label": ["spam", "spam", "spam"]})
    with pytest.raises(DataError) as exc:
        load_classification(one, DEV, ["text"], "label")
    msg = str(exc.value)
    assert "\n" not in msg and "train.csv" in msg and "'label'" in msg and "one class ('spam')" in msg
    assert "task.columns.label" in msg


def test_label_errors_name_the_row_and_the_fix():
    unseen = Table("validation.csv", {"text": ["x"], "label": ["refund"]})
    with pytest.raises(DataError, match=r"validation.csv: row 1 has label 'refund'.*task.labels"):
        load_classification(TRAIN, unseen, ["text"], "label")
    with pytest.raises(DataError, match=r"train.csv: row 3 has label 'question'.*not among task.labels"):
        load_classification(TRAIN, TRAIN, ["text"], "label", labels=["billing", "bug"])
    gap = Table("train.csv", {"text": ["a", "b"], "label": ["x", None]})
    with pytest.raises(DataError, match=r"train.csv: row 2 has no label in column 'label'"):
        load_classification(gap, DEV, ["text"], "label")
    with pytest.raises(DataError, match=r"train.csv: no column 'body'.*set task.columns.text"):
        load_classification(TRAIN, DEV, ["body"], "label")
    with pytest.raises(DataError, match=r"no column 'owner'.*set partition.column"):
        load_classification(TRAIN, DEV, ["text"], "label", extra_columns=["owner"])
