"""Reading a user's own files: every format gives the same columns; splits from a directory or a held-out
share; every failure is one line naming the file (and column) and the fix."""

from pathlib import Path

import pytest

from fedlora.data.examples import write_rows
from fedlora.data.tabular import SplitRequest, Table, fingerprint, hold_out, load_splits, read_file
from fedlora.errors import DataError

ROWS = [
    {"user_id": "u1", "text": 'She said "fine", then left', "label": "pos"},
    {"user_id": "u2", "text": "NA", "label": "neg"},  # a word, not a missing value
    {"user_id": "u1", "text": "null and void", "label": "neutral"},
    {"user_id": "u3", "text": "it broke, again", "label": "neg"},
]
FORMATS = ["csv", "tsv", "json", "jsonl", "parquet"]


def request(data_dir, **kw) -> SplitRequest:
    base = dict(
        data_dir=None if data_dir is None else str(data_dir),
        hub_dataset=None,
        hub_config=None,
        hub_revision=None,
        train="train",
        dev="validation",
        dev_share=None,
        holdout_seed=0,
    )
    return SplitRequest(**{**base, **kw})


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_the_same_rows(tmp_path, fmt):
    table = read_file(write_rows(tmp_path / f"rows.{fmt}", ROWS))
    assert isinstance(table, Table) and len(table) == 4
    assert table.columns["text"] == [r["text"] for r in ROWS]  # quotes, commas and "NA" survive
    assert table.columns["label"] == [r["label"] for r in ROWS]
    assert table.filled("user_id", "partition.column") == ["u1", "u2", "u1", "u3"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_directory_gives_train_and_validation_files_of_any_format(tmp_path, fmt):
    write_rows(tmp_path / f"train.{fmt}", ROWS)
    write_rows(tmp_path / f"validation.{fmt}", ROWS[:2])
    train, dev = load_splits(request(tmp_path))
    assert (len(train), len(dev)) == (4, 2)
    assert train.source.endswith(f"train.{fmt}")
    # a split may also be named by its file's full name
    train, dev = load_splits(request(tmp_path, train=f"train.{fmt}", dev=f"validation.{fmt}"))
    assert len(dev) == 2


def test_a_single_file_holds_out_a_seeded_share_that_ignores_the_run_seed(tmp_path):
    rows = [{"text": f"t{i}", "label": "a" if i % 2 else "b"} for i in range(20)]
    path = write_rows(tmp_path / "all.jsonl", rows)
    train, dev = load_splits(request(path, dev_share=0.25))
    assert (len(train), len(dev)) == (15, 5)
    assert sorted(train.columns["text"] + dev.columns["text"]) == sorted(r["text"] for r in rows)
    again = load_splits(request(path, dev_share=0.25))
    assert again[1].columns == dev.columns  # same rows every time (splits.seed, not the run's seed)
    other = load_splits(request(path, dev_share=0.25, holdout_seed=1))
    assert other[1].columns != dev.columns
    with pytest.raises(DataError, match=r"all.jsonl is one file.*task.splits.dev_share"):
        load_splits(request(path))
    with pytest.raises(DataError, match="leaves an empty split"):
        hold_out(Table("x.csv", {"a": [1]}), 0.5, 0)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_a_missing_column_names_the_file_the_column_and_the_field(tmp_path):
    table = read_file(write_rows(tmp_path / "t.csv", ROWS))
    with pytest.raises(DataError) as exc:
        table.column("sentence", "task.columns.text")
    msg = one_line(exc)
    assert "t.csv" in msg and "'sentence'" in msg and "columns: user_id, text, label" in msg
    assert "set task.columns.text" in msg


def test_empty_splits_are_refused(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("text,label\n")
    (tmp_path / "none.jsonl").write_text("\n\n")
    with pytest.raises(DataError) as exc:
        read_file(tmp_path / "empty.csv")
    assert "empty.csv is empty" in one_line(exc)
    with pytest.raises(DataError) as exc:
        read_file(tmp_path / "header.csv")
    assert "header.csv has a header but no rows" in one_line(exc)
    with pytest.raises(DataError) as exc:
        read_file(tmp_path / "none.jsonl")
    assert "none.jsonl" in one_line(exc)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b",\n', "cannot read it as JSON Lines"),
        ("bad.json", '[{"text": "a"', "cannot read it as JSON"),
        ("bad.parquet", "not parquet at all", "cannot read it as Parquet"),
        ("bad.csv", "text,label\nhello,pos,extra,fields\nx,neg\n", "more fields than the header"),
        ("bad.tsv", "text\tlabel\nhello\tpos\textra\tfield\n", "more fields than the header"),
        ("notes.txt", "hello", "unknown file type '.txt'"),
    ],
)
def test_a_file_that_does_not_parse_is_one_line_with_the_fix(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as exc:
        read_file(path)
    msg = one_line(exc)
    assert str(path) in msg and expected in msg
    assert "; " in msg  # the fix follows the problem


def test_directory_splits_name_what_is_there(tmp_path):
    write_rows(tmp_path / "train.csv", ROWS)
    write_rows(tmp_path / "dev.csv", ROWS)
    with pytest.raises(DataError) as exc:
        load_splits(request(tmp_path))
    msg = one_line(exc)
    assert "no file for split 'validation'" in msg and "dev.csv" in msg and "task.splits.dev" in msg
    write_rows(tmp_path / "validation.csv", ROWS)
    with pytest.raises(DataError, match="is a validation split already"):
        load_splits(request(tmp_path, dev_share=0.2))
    with pytest.raises(DataError, match="does not exist"):
        load_splits(request(tmp_path / "missing"))


def test_the_fingerprint_changes_with_the_files(tmp_path):
    write_rows(tmp_path / "train.csv", ROWS)
    write_rows(tmp_path / "validation.csv", ROWS)
    first = fingerprint(request(tmp_path))
    assert first["source"] == str(Path(tmp_path).resolve()) and len(first["sha256"]) == 64
    write_rows(tmp_path / "validation.csv", ROWS[:3])
    assert fingerprint(request(tmp_path))["sha256"] != first["sha256"]
    hub = fingerprint(request(None, hub_dataset="ag_news"))
    assert hub == {"source": "hub:ag_news", "sha256": None}


def test_an_unreachable_hub_dataset_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # never a download in the tests
    with pytest.raises(DataError) as exc:
        load_splits(request(None, hub_dataset="fedlora-test/no-such-dataset"))
    msg = one_line(exc)
    assert msg.startswith("hub:fedlora-test/no-such-dataset:train: cannot load it")
    assert "task.hub.dataset" in msg and "task.data_dir" in msg
