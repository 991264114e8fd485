"""`fedlora report` on hand-made run directories: grouping, numbers, optional keys, figures (no training).

The end-to-end check on real runs (a compare grid) is in test_sweep.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fedlora.errors import FedLoraError
from fedlora.figures import band, curve
from fedlora.report import find_runs, group_runs, make_report, run_metrics


def write_run(path: Path, agg: str, seed: int, accs: list[float], dt: float, **extra) -> dict:
    """A finished run directory: config.yaml and a summary.json shaped like Server.summary()'s."""
    history = [
        {
            "version": v,
            "virtual_s": round(v * dt, 6),
            "samples": 100 * v,
            "bytes": 1000 * v,
            "metrics": {"accuracy": a, "f1": a / 2, "loss": 1 - a},
        }
        for v, a in enumerate(accs)
    ]
    best = max(history, key=lambda p: (p["metrics"]["accuracy"], -p["version"]))
    summary = {
        "final": history[-1],
        "best": best,
        "metric": "accuracy",
        "time_to_target": extra.pop("time_to_target", None),
        "stopped_by": "versions",
        "totals": {
            "versions": len(accs) - 1,
            "virtual_seconds": history[-1]["virtual_s"],
            "samples_trained": history[-1]["samples"],
            "bytes_up": 400 * (len(accs) - 1) + seed,
            "bytes_down": 600 * (len(accs) - 1),
            "dropped": {},
            "staleness_mean": 0.5 * seed,
        },
        "history": history,
        "timing": {"real_seconds": 1.0},
        "run_dir": str(path),
        **extra,
    }
    path.mkdir(parents=True)
    config = {"seed": seed, "aggregator": {"name": agg}, "schedule": {"name": "fedavg"}, "output": {"dir": str(path)}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "summary.json").write_text(json.dumps(summary))
    return summary


@pytest.fixture
def runs(tmp_path) -> dict[tuple[str, int], dict]:
    out = {}
    for seed in range(3):
        out["hlora", seed] = write_run(
            tmp_path / f"h{seed}",
            "hlora",
            seed,
            [0.5, 0.6 + 0.01 * seed, 0.7 + 0.02 * seed],
            dt=10.0 + seed,
            local={"accuracy": 0.8 + 0.01 * seed, "per_client": {"min": 0.1 * seed}, "note": "text"},
            time_to_target={"version": 2, "virtual_s": 20.0 + seed, "samples": 200, "bytes": 2000} if seed else None,
        )
        out["zeropad", seed] = write_run(
            tmp_path / "grid" / f"z{seed}", "zeropad", seed, [0.5, 0.55, 0.6 - 0.01 * seed, 0.62], dt=5.0
        )
    return out


def csv_rows(path: Path) -> dict[str, dict[str, str]]:
    return {r["method"]: r for r in csv.DictReader(path.open())}


def test_groups_are_configs_minus_seed_and_numbers_match_the_summaries(runs, tmp_path):
    rep = make_report([tmp_path], out=tmp_path / "rep", figures=False)
    assert [g.label for g in rep.table.groups] == ["aggregator=hlora", "aggregator=zeropad"]
    assert all(g.seeds == [0, 1, 2] for g in rep.table.groups)
    rows = csv_rows(tmp_path / "rep" / "summary.csv")
    for agg in ("hlora", "zeropad"):
        sums = [runs[agg, s] for s in range(3)]
        expected = {
            "final.accuracy": [s["final"]["metrics"]["accuracy"] for s in sums],
            "final.f1": [s["final"]["metrics"]["f1"] for s in sums],
            "best.accuracy": [s["best"]["metrics"]["accuracy"] for s in sums],
            "totals.virtual_seconds": [s["totals"]["virtual_seconds"] for s in sums],
            "totals.bytes_up": [s["totals"]["bytes_up"] for s in sums],
            "totals.bytes_down": [s["totals"]["bytes_down"] for s in sums],
            "totals.staleness_mean": [s["totals"]["staleness_mean"] for s in sums],
        }
        row = rows[f"aggregator={agg}"]
        for col, values in expected.items():
            assert float(row[f"{col}_mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            assert float(row[f"{col}_std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            assert row[f"{col}_n"] == "3"


def test_optional_keys_local_metrics_and_partial_time_to_target(runs, tmp_path):
    rep = make_report([tmp_path], out=tmp_path / "rep", figures=False)
    row = csv_rows(tmp_path / "rep" / "summary.csv")["aggregator=hlora"]
    assert float(row["local.accuracy_mean"]) == pytest.approx(np.mean([0.80, 0.81, 0.82]))
    assert float(row["local.per_client.min_mean"]) == pytest.approx(0.1)
    assert "local.note_mean" not in row  # only numbers
    assert float(row["target.virtual_s_mean"]) == pytest.approx(21.5)
    assert row["target.virtual_s_n"] == "2"
    zrow = csv_rows(tmp_path / "rep" / "summary.csv")["aggregator=zeropad"]
    assert zrow["local.accuracy_n"] == "0" and zrow["local.accuracy_mean"] == ""
    md = (rep.out / "report.md").read_text()
    assert "21.5 ± 0.7 (2/3)" in md  # seeds that never reached the target are not silently averaged
    assert "local accuracy" in md


def test_target_recomputed_from_history(runs, tmp_path):
    make_report([tmp_path], out=tmp_path / "rep", target=0.6, figures=False)
    per_run = list(csv.DictReader((tmp_path / "rep" / "runs.csv").open()))
    z = {int(r["seed"]): r for r in per_run if r["method"] == "aggregator=zeropad"}
    assert float(z[0]["target.virtual_s"]) == 10.0  # 0.6 first reached at version 2 (0.6 - 0)
    assert float(z[1]["target.virtual_s"]) == 15.0  # 0.59 at version 2, 0.62 at version 3
    h = {int(r["seed"]): r for r in per_run if r["method"] == "aggregator=hlora"}
    assert float(h[0]["target.version"]) == 1 and float(h[0]["target.virtual_s"]) == 10.0


def test_group_by_and_its_errors(runs, tmp_path):
    found, unfinished, varied = find_runs([tmp_path])
    assert len(found) == 6 and unfinished == [] and varied == []
    groups = group_runs(found, group_by=["schedule.name"])
    assert [(g.label, len(g.runs)) for g in groups] == [("schedule=fedavg", 6)]
    with pytest.raises(FedLoraError, match=r"--group-by aggregator\.nam: .*did you mean aggregator\.name"):
        group_runs(found, group_by=["aggregator.nam"])


def test_grid_manifest_orders_labels_and_unfinished_runs_are_listed(tmp_path):
    for i, (agg, lr) in enumerate([("hlora", 0.1), ("hlora", 0.2), ("zeropad", 0.1)]):
        d = tmp_path / f"c{i}"
        write_run(d, agg, 0, [0.5, 0.6], dt=1.0)
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        cfg["training"] = {"lr": lr}
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "grid.json").write_text(json.dumps({"vary": {"training.lr": [], "aggregator.name": []}}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.yaml").write_text("seed: 0\n")
    rep = make_report([tmp_path], out=tmp_path / "rep", figures=False)
    assert [g.label for g in rep.table.groups] == [
        "training.lr=0.1, aggregator=hlora",
        "training.lr=0.1, aggregator=zeropad",
        "training.lr=0.2, aggregator=hlora",
    ]
    assert rep.unfinished == [tmp_path / "broken"]
    assert "Not finished (left out)" in (rep.out / "report.md").read_text()


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FedLoraError, match="no finished run directories"):
        make_report([tmp_path])
    with pytest.raises(FedLoraError, match="does not exist"):
        make_report([tmp_path / "nope"])


def test_band_interpolates_seeds_on_a_common_grid():
    a = (np.array([0.0, 10.0, 20.0]), np.array([0.0, 1.0, 2.0]))
    b = (np.array([0.0, 5.0, 15.0]), np.array([0.0, 1.0, 3.0]))
    grid, mean, std = band([a, b], points=4)
    assert grid.tolist() == [0.0, 5.0, 10.0, 15.0]  # up to the shorter curve's end
    ya, yb = np.interp(grid, *a), np.interp(grid, *b)
    assert np.allclose(mean, (ya + yb) / 2)
    assert np.allclose(std, np.std([ya, yb], axis=0, ddof=1))
    xs, ys = curve([{"version": 1, "metrics": {"accuracy": 0.5}}, {"version": 0, "metrics": {}}], "version", "accuracy")
    assert xs.tolist() == [1.0] and ys.tolist() == [0.5]


def test_figures_and_cli(runs, tmp_path):
    from fedlora.cli import app

    result = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert "aggregator=hlora" in result.output
    for x in ("version", "virtual_s", "bytes"):
        png = tmp_path / "rep" / f"accuracy_vs_{x}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "![accuracy_vs_bytes](accuracy_vs_bytes.png)" in md
    assert "fedlora report" in md  # the command that produced it
    bad = CliRunner().invoke(app, ["report", str(tmp_path), "--group-by", "nope"])
    assert bad.exit_code == 2 and "--group-by nope" in bad.output


def test_run_metrics_skips_non_numbers_and_reads_time_budgets():
    m = run_metrics(
        {
            "metric": "accuracy",
            "final": {"version": 1, "metrics": {"accuracy": 0.5, "loss": float("nan")}},
            "at_time": {"100": {"version": 3, "metrics": {"accuracy": 0.6}}, "200": None},
            "local": {"flag": True, "x": 2},
        }
    )
    assert m == {"final.accuracy": 0.5, "at_time.100.accuracy": 0.6, "local.x": 2.0}


def test_a_varied_whole_section_is_labelled_by_its_name_then_its_own_options(tmp_path):
    for i, schedule in enumerate([{"name": "fedbuff", "buffer_size": 5}, {"name": "fedavg", "per_round": 5}]):
        d = tmp_path / f"c{i}"
        write_run(d, "hlora", 0, [0.5, 0.6], dt=1.0)
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        cfg["schedule"] = schedule
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "grid.json").write_text(json.dumps({"vary": {"schedule": []}}))
    rep = make_report([tmp_path], out=tmp_path / "rep", figures=False)
    assert [g.label for g in rep.table.groups] == [
        "schedule=fedavg, schedule.per_round=5",
        "schedule=fedbuff, schedule.buffer_size=5",
    ]
