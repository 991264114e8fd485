"""`python -m fedlora.data.examples`: the example files are written without a download, byte for byte the same
every time, and GLUE rewrites keep GLUE's label ids."""

import json

from fedlora.data.examples import GLUE_LABELS, main
from fedlora.data.glue import load_glue


def test_the_example_files_are_the_same_every_time(tmp_path):
    assert main([str(tmp_path / "a")]) == 0 and main([str(tmp_path / "b")]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert [str(f) for f in files] == [
        "chat/train.jsonl",
        "chat/validation.jsonl",
        "instructions/train.jsonl",
        "instructions/validation.jsonl",
        "tickets/train.csv",
        "tickets/validation.csv",
    ]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_glue_rewrites_keep_the_label_ids(glue_dir, tmp_path):
    assert main([str(tmp_path / "rte"), "--glue", "rte", "--glue-dir", str(glue_dir), "--format", "tsv"]) == 0
    lines = (tmp_path / "rte" / "validation.tsv").read_text().splitlines()
    labels = [line.split("\t")[-1] for line in lines[1:]]
    gold = load_glue("rte", "dev", glue_dir).labels
    assert labels == [GLUE_LABELS["rte"][y] for y in gold] and sorted(GLUE_LABELS["rte"]) == [
        "entailment",
        "not_entailment",
    ]
    assert main([str(tmp_path / "mrpc"), "--glue", "mrpc", "--glue-dir", str(glue_dir), "--as", "instruction"]) == 0
    first = json.loads((tmp_path / "mrpc" / "train.jsonl").read_text().splitlines()[0])
    assert first["choices"] == ["no", "yes"] and first["output"] in first["choices"]
    assert first["input"].startswith("Sentence 1: ")
