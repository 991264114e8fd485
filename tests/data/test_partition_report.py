"""The partition report: `fedlora partition` prints the table and writes JSON, markdown and a PNG; runs
write the same table; noise corruption reaches the tokenised training data."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fedlora.cli import app
from fedlora.data.partitioners import PARTITIONERS, PartitionInputs
from fedlora.partition_report import build_report

from ..conftest import REPO

FIELDS = {"client", "examples", "label_share", "length_mean", "length_quartiles", "quality_mean", "bin_share"}


@pytest.mark.parametrize("name", ["length", "quality"])
def test_partition_cli_prints_the_table_and_writes_a_png(glue_dir, tmp_path, name):
    out = tmp_path / "report"
    args = ["partition", str(REPO / "configs" / "tiny.yaml"), "--set", f"task.data_dir={glue_dir}"]
    args += ["--set", f"partition.name={name}", "--set", "partition.alpha=0.1", "--out", str(out)]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"partition: {name}" in result.output and "examples" in result.output
    assert sum(1 for line in result.output.splitlines() if line.startswith("│")) == 4  # one row per client
    png = (out / "partition.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    data = json.loads((out / "partition.json").read_text())
    assert data["partition"] == name and len(data["rows"]) == 4
    assert set(data["rows"][0]) >= FIELDS and sum(r["examples"] for r in data["rows"]) == 240
    assert len(data["bin_edges"]["all"]) == 5
    assert (out / "partition.md").read_text().count("\n| ") == 6  # header, rule, 4 clients


def test_partition_cli_reports_config_errors(glue_dir, tmp_path):
    args = ["partition", str(REPO / "configs" / "tiny.yaml"), "--set", f"task.data_dir={glue_dir}"]
    args += ["--set", "partition.name=length", "--set", "partition.bins=1", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "partition.bins" in result.output


def test_report_rows_match_the_partition():
    labels = np.array([0, 1] * 20)
    lengths = np.arange(40)
    inputs = PartitionInputs(labels=labels, lengths=lengths, text_a=["A clean sentence."] * 40, text_b=["x y"] * 40)
    cls = PARTITIONERS.get("label")
    p = cls(cls.Options.model_validate({"alpha": 1e-3}), 0)
    parts = [np.arange(0, 40, 2), np.arange(1, 40, 2)]
    report = build_report("label", p, inputs, parts, seed=0)
    assert report.bin_score == "length (tokens)" and report.quality_score == "quality (heuristic)"
    assert [r["label_share"] for r in report.rows] == [[1.0, 0.0], [0.0, 1.0]]
    assert report.rows[0]["length_mean"] == 19.0 and report.rows[1]["length_quartiles"] == [10.5, 20.0, 29.5]
    assert all(sum(r["bin_share"]) == pytest.approx(1.0) for r in report.rows)
    assert "| 0 | 20 | 1.00/0.00 |" in report.to_markdown()


def test_noise_corruption_reaches_the_tokenized_training_data(tiny_config):
    from fedlora.experiment import partition_report, prepare_data

    cfg = tiny_config("partition.name=noise", "partition.corrupt=both", "partition.shares=[0.0, 0.5, 0.25, 1.0]")
    data = prepare_data(cfg)
    c = data.corruption
    assert [len([i for i in p if i in c.labels]) for p in data.partitions] == [0, 30, 15, 60]
    clean = data.inputs
    for i in c.labels:
        assert data.train.labels[i] == 1 - clean.labels[i] and data.train_pairs.labels[i] == data.train.labels[i]
        assert data.train_pairs.text_a[i] != clean.text_a[i]
    untouched = next(i for i in range(len(clean)) if i not in c.labels)
    assert data.train.labels[untouched] == clean.labels[untouched]
    rows = partition_report(data).rows
    assert [r["noise"]["flipped"] for r in rows] == [0, 30, 15, 60]
    flipped = 1 - clean.labels[data.partitions[3]]  # client 3 has every label flipped: the table shows that
    assert rows[3]["label_share"] == [round(float(np.mean(flipped == k)), 4) for k in (0, 1)]


@pytest.mark.slow
def test_every_run_directory_gets_the_partition_table(tiny_config, tmp_path):
    from fedlora.experiment import run_experiment

    cfg = tiny_config("partition.name=length", "stop.versions=1", "training.local_steps=1", "eval.every_versions=1")
    summary = run_experiment(cfg, out=tmp_path / "run", progress=False)
    run = tmp_path / "run"
    table = json.loads((run / "partition.json").read_text())
    record = json.loads((run / "run.json").read_text())
    assert record["partition"] == table["rows"] and summary["run_dir"] == str(run)
    assert (run / "partition.md").read_text().startswith("# Partition: length")
