from pathlib import Path

import pytest

from fedlora.data.glue import load_glue
from fedlora.errors import DataError

QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
QQP_ROWS = [
    "0\t1\t2\tHow do I learn Python?\tWhat is the best way to learn Python?\t1\n",
    "1\t3\t4\tWhy is the sky blue?\tHow far away is the moon?\t0\n",
    '2\t5\t6\tWhat does "LoRA" stand for?\tWhat is low-rank adaptation?\t1\n',
]


def write_qqp(root: Path) -> Path:
    """A small QQP-format fixture: GLUE's QQP header and quoting (none), written by the test itself."""
    folder = root / "QQP"
    folder.mkdir(parents=True)
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text(QQP_HEADER + "".join(QQP_ROWS), encoding="utf-8")
    return root


def test_mrpc_and_rte_match_the_official_row_counts_and_label_mixes(glue_dir):
    train = load_glue("mrpc", "train", glue_dir)
    dev = load_glue("mrpc", "dev", glue_dir)
    assert (len(train), len(dev)) == (3668, 408)
    assert sum(train.labels) == 2474 and sum(dev.labels) == 279
    assert any('"' in s for s in train.text_a)  # bare quotes survive (quoting off)
    rte = load_glue("rte", "train", glue_dir / "RTE")  # a task folder works too
    assert len(rte) == 2490
    assert rte.labels.count(0) == 1249  # entailment -> 0, as in the hub's GLUE
    assert len(load_glue("rte", "dev", glue_dir)) == 277


def test_qqp_loads_through_the_same_loader(tmp_path):
    root = write_qqp(tmp_path)
    pairs = load_glue("qqp", "train", root)
    assert pairs.labels == [1, 0, 1]
    assert pairs.text_a[2] == 'What does "LoRA" stand for?'
    assert pairs.text_b[1] == "How far away is the moon?"


def test_env_var_supplies_the_directory(glue_dir, monkeypatch):
    monkeypatch.setenv("FEDLORA_DATA_DIR", str(glue_dir))
    assert len(load_glue("mrpc", "dev")) == 408


def test_wrong_columns_name_the_file_and_the_expected_header(tmp_path):
    folder = tmp_path / "QQP"
    folder.mkdir()
    (folder / "train.tsv").write_text("id\tq1\tq2\tlabel\n0\ta\tb\t1\n")
    with pytest.raises(DataError, match=r"train.tsv: missing column\(s\) \['question1', 'question2', 'is_duplicate'\]"):
        load_glue("qqp", "train", tmp_path)


def test_missing_split_file_and_missing_task_folder(tmp_path):
    root = write_qqp(tmp_path)
    (root / "QQP" / "dev.tsv").unlink()
    with pytest.raises(DataError, match="missing file .*dev.tsv"):
        load_glue("qqp", "dev", root)
    with pytest.raises(DataError, match="no MRPC/train.tsv under"):
        load_glue("mrpc", "train", root)


def test_bad_label_is_reported_with_its_line(tmp_path):
    root = write_qqp(tmp_path)
    (root / "QQP" / "train.tsv").write_text(QQP_HEADER + "0\t1\t2\ta\tb\tyes\n")
    with pytest.raises(DataError, match=r"train.tsv:2: label 'yes'"):
        load_glue("qqp", "train", root)


def test_hub_route_failure_says_how_to_use_a_local_copy(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.delenv("FEDLORA_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="nyu-mll/glue/rte .*FEDLORA_DATA_DIR"):
        load_glue("rte", "dev")


def test_hub_route_maps_columns(monkeypatch):
    import datasets

    calls = []

    def fake(name, config, split):
        calls.append((name, config, split))
        return {"question1": ["a"], "question2": ["b"], "label": [1]}

    monkeypatch.delenv("FEDLORA_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake)
    pairs = load_glue("qqp", "dev")
    assert calls == [("nyu-mll/glue", "qqp", "validation")]
    assert (pairs.text_a, pairs.text_b, pairs.labels) == (["a"], ["b"], [1])


def test_a_tsv_that_is_not_utf8_names_the_file_and_line(tmp_path):
    root = write_qqp(tmp_path)
    train = root / "QQP" / "train.tsv"
    lines = train.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"sky", b"sk\xff")  # a latin-1 byte on line 3
    train.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=r"train\.tsv:3: not UTF-8 text \(byte 0xff\); .*re-save it as UTF-8"):
        load_glue("qqp", "train", root)


def test_the_data_fingerprint_changes_with_the_files_not_the_path(tmp_path, monkeypatch):
    from fedlora.data.glue import data_fingerprint

    a, b = write_qqp(tmp_path / "a"), write_qqp(tmp_path / "b")
    fa, fb = data_fingerprint("qqp", a), data_fingerprint("qqp", b)
    assert fa["sha256"] == fb["sha256"] and fa["source"] != fb["source"]
    with (b / "QQP" / "dev.tsv").open("a") as fh:
        fh.write(QQP_ROWS[0])
    assert data_fingerprint("qqp", b)["sha256"] != fa["sha256"]
    monkeypatch.delenv("FEDLORA_DATA_DIR", raising=False)
    assert data_fingerprint("qqp", None) == {"source": "hub:nyu-mll/glue/qqp", "sha256": None}
