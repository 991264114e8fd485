"""`fedlora compare`: a real grid on the tiny model (2 learning rates x 2 seeds, 2 versions each).

One module-scoped grid serves every slow test: it is run once serially, then re-invoked (all cells must be
skipped without training), reported (numbers equal the runs' own summaries), run in parallel (identical
numbers), and an interrupted cell is resumed to the same summary as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fedlora.errors import ConfigError
from fedlora.sweep import build_grid, compare, parse_seeds, parse_vary, plan_workers, split_values

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
VARY = ["training.lr=0.005,0.01"]


def sets(glue: Path) -> list[str]:
    # one torch thread: on a shared, busy CPU, torch's spinning thread pool is ten times slower
    return [f"task.data_dir={glue}", "output.progress=false", "stop.versions=2", "training.threads=1"]


@pytest.fixture(scope="module")
def grid(glue_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    g, outcomes = compare(TINY, VARY, seeds=2, sets=sets(glue_dir), out=out, jobs=1, progress=False)
    return g, outcomes


def summaries(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.rglob("summary.json"))}


# ----- fast: parsing and planning -------------------------------------------------------------------------


def test_vary_parsing_and_seeds():
    assert parse_vary("aggregator.name=fedit").labels == ("fedit",)
    assert parse_vary("lora.target_modules=[query,value],[query]").labels == ("[query,value]", "[query]")
    assert split_values("a, b ,{x: 1, y: 2}") == ["a", "b", "{x: 1, y: 2}"]
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,5,7") == [0, 5, 7]
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds("0")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("training.lrr=0.1", r"training\.lrr is not a config field; did you mean training\.lr\?"),
        ("trainin.lr=0.1", r"trainin is not a config field; did you mean training\?"),
        ("training.lr.x=1", r"training\.lr is a value, not a section"),
        ("seed=0,1", r"use --seeds"),
        ("aggregator.nonsense=1", r"aggregator\.nonsense is not a config field.*aggregator has: .*name"),
        ("training.lr", r"expected key=v1,v2"),
        ("training.lr=0.1,0.1", r"listed twice"),
    ],
)
def test_vary_errors_name_the_field_and_the_fix(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_vary(text)


def test_options_of_a_named_choice_are_valid_vary_keys():
    parse_vary("schedule.per_round=2,4")  # a fedavg option, under schedule


def test_cell_directories_are_stable_and_readable(glue_dir, tmp_path):
    g = build_grid(
        TINY, ["schedule.per_round=2,4", "training.lr=0.005"], seeds="0,3", sets=sets(glue_dir), out=tmp_path
    )
    assert [c.rel for c in g.cells] == [
        "schedule.per_round=2__training.lr=0.005/seed=0",
        "schedule.per_round=2__training.lr=0.005/seed=3",
        "schedule.per_round=4__training.lr=0.005/seed=0",
        "schedule.per_round=4__training.lr=0.005/seed=3",
    ]
    assert [c.seed for c in g.configs] == [0, 3, 0, 3]
    assert g.configs[2].schedule.options["per_round"] == 4


def test_bad_cell_value_fails_before_anything_runs(glue_dir, tmp_path):
    with pytest.raises(
        ConfigError, match=r"(?s)grid cell training\.lr=-1.*training\.lr: Input should be greater than 0"
    ):
        build_grid(TINY, ["training.lr=0.01,-1"], sets=sets(glue_dir), out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_plan_workers_never_oversubscribes():
    for jobs in range(1, 6):
        for cores in (1, 2, 3, 8):
            for threads in (None, 1, 2, 3):
                procs, per = plan_workers(jobs, cells=4, cores=cores, threads=threads)
                assert procs >= 1 and per >= 1
                assert procs <= jobs
                assert procs * per <= max(cores, per)  # one process always runs, even if threads > cores
    assert plan_workers(4, cells=4, cores=8, threads=None) == (4, 2)
    assert plan_workers(4, cells=2, cores=8, threads=None) == (2, 4)
    assert plan_workers(4, cells=4, cores=8, threads=3) == (2, 3)


# ----- slow: the real grid --------------------------------------------------------------------------------


@pytest.mark.slow
def test_grid_writes_four_run_directories_and_a_manifest(grid):
    g, outcomes = grid
    assert [o.action for o in outcomes] == ["ran"] * 4
    assert sorted(summaries(g.out)) == [
        "training.lr=0.005/seed=0",
        "training.lr=0.005/seed=1",
        "training.lr=0.01/seed=0",
        "training.lr=0.01/seed=1",
    ]
    manifest = json.loads((g.out / "grid.json").read_text())
    assert manifest["vary"] == {"training.lr": ["0.005", "0.01"]}
    assert manifest["seeds"] == [0, 1]
    assert [c["status"] for c in manifest["cells"]] == ["finished"] * 4
    assert [c["values"]["training.lr"] for c in manifest["cells"]] == [0.005, 0.005, 0.01, 0.01]
    for s in summaries(g.out).values():
        assert s["totals"]["versions"] == 2


@pytest.mark.slow
def test_second_invocation_skips_finished_cells_and_reports(grid, glue_dir, monkeypatch):
    import fedlora.experiment
    from fedlora.cli import app

    g, _ = grid
    mtimes = {p: p.stat().st_mtime_ns for p in g.out.rglob("summary.json")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(fedlora.experiment, "prepare", no_training)
    args = ["compare", str(TINY), "--vary", VARY[0], "--seeds", "2", "--out", str(g.out), "--no-progress"]
    for s in sets(glue_dir):
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped") >= 4
    assert "4 skipped of 4 cells" in result.output
    assert {p: p.stat().st_mtime_ns for p in g.out.rglob("summary.json")} == mtimes

    # the report written at the end: numbers equal those recomputed from the runs' own summaries
    rows = {r["method"]: r for r in csv.DictReader((g.out / "report" / "summary.csv").open())}
    assert set(rows) == {"training.lr=0.005", "training.lr=0.01"}
    runs = summaries(g.out)
    for lr in ("0.005", "0.01"):
        cells = [runs[f"training.lr={lr}/seed={s}"] for s in (0, 1)]
        row = rows[f"training.lr={lr}"]
        for column, values in {
            "final.loss": [c["final"]["metrics"]["loss"] for c in cells],
            "final.accuracy": [c["final"]["metrics"]["accuracy"] for c in cells],
            "best.accuracy": [c["best"]["metrics"]["accuracy"] for c in cells],
            "totals.virtual_seconds": [c["totals"]["virtual_seconds"] for c in cells],
            "totals.bytes_up": [c["totals"]["bytes_up"] for c in cells],
            "totals.bytes_down": [c["totals"]["bytes_down"] for c in cells],
            "totals.staleness_mean": [c["totals"]["staleness_mean"] for c in cells],
        }.items():
            assert float(row[f"{column}_mean"]) == pytest.approx(np.mean(values), rel=1e-12, abs=1e-12)
            assert float(row[f"{column}_std"]) == pytest.approx(np.std(values, ddof=1), rel=1e-12, abs=1e-12)
            assert int(row[f"{column}_n"]) == 2
    for name in ("accuracy_vs_version", "accuracy_vs_virtual_s", "accuracy_vs_bytes"):
        png = g.out / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "| training.lr=0.005 | 2 |" in (g.out / "report" / "report.md").read_text()


@pytest.mark.slow
def test_interrupted_cell_resumes_to_the_uninterrupted_summary(grid, glue_dir, tmp_path):
    from fedlora.experiment import deterministic_view, run_experiment
    from fedlora.io.rundir import RunDir

    g, _ = grid
    reference = json.loads((g.out / "training.lr=0.005" / "seed=0" / "summary.json").read_text())
    small = build_grid(TINY, ["training.lr=0.005"], seeds=1, sets=sets(glue_dir), out=tmp_path)
    cell, cfg = small.cells[0], small.configs[0]

    class Interrupted(Exception):
        pass

    def interrupt(server):
        if server.version >= 2:  # version 1 is checkpointed; the kill comes before version 2 is
            raise Interrupted

    with pytest.raises(Interrupted):
        run_experiment(cfg, out=cell.path, on_version=interrupt, progress=False)
    rd = RunDir(cell.path)
    assert rd.has_checkpoint() and not rd.is_finished()

    _, outcomes = compare(TINY, ["training.lr=0.005"], 1, sets(glue_dir), tmp_path, progress=False)
    assert [o.action for o in outcomes] == ["resumed"]
    assert deterministic_view(outcomes[0].summary) == deterministic_view(reference)
    assert deterministic_view(rd.read_json(rd.summary)) == deterministic_view(reference)


@pytest.mark.slow
def test_parallel_cells_equal_serial_cells(grid, glue_dir, tmp_path):
    from fedlora.experiment import deterministic_view

    g, _ = grid
    _, outcomes = compare(TINY, ["training.lr=0.01"], 2, sets(glue_dir), tmp_path, jobs=2, progress=False, cores=2)
    assert [o.action for o in outcomes] == ["ran", "ran"]
    for o in outcomes:
        serial = json.loads((g.out / o.cell.rel / "summary.json").read_text())
        assert deterministic_view(o.summary) == deterministic_view(serial)
        assert json.loads((o.cell.path / "run.json").read_text())["torch_threads"] == 1


@pytest.mark.slow
def test_a_cell_dir_holding_another_config_is_refused(grid, glue_dir):
    g, _ = grid
    with pytest.raises(ConfigError, match="holds a run of a different config"):
        compare(TINY, VARY, 2, [*sets(glue_dir), "training.batch_size=8"], g.out, progress=False)


def test_whole_sections_can_be_varied(glue_dir, tmp_path):
    g = build_grid(
        TINY, ["schedule={name: fedavg, per_round: 2},{name: fedavg, per_round: 4}"], sets=sets(glue_dir), out=tmp_path
    )
    assert [c.rel for c in g.cells] == [
        "schedule=name-fedavg,per_round-2/seed=0",
        "schedule=name-fedavg,per_round-4/seed=0",
    ]
    assert [c.schedule.options["per_round"] for c in g.configs] == [2, 4]


def test_varying_a_methods_name_gives_each_method_its_own_options(glue_dir, tmp_path):
    # tiny.yaml's schedule section is fedavg's (per_round: 4); --set adds fedbuff's buffer_size for all cells
    g = build_grid(
        TINY, ["schedule.name=fedavg,fedbuff"], sets=[*sets(glue_dir), "schedule.buffer_size=2"], out=tmp_path
    )
    fedavg, fedbuff = g.configs
    assert (fedavg.schedule.name, fedavg.schedule.model_extra) == ("fedavg", {"per_round": 4})
    assert (fedbuff.schedule.name, fedbuff.schedule.model_extra) == ("fedbuff", {"buffer_size": 2})
    assert g.switched == ["schedule"]
    with pytest.raises(ConfigError, match="schedule.buffer_sise: unknown key"):  # a typo is not dropped
        build_grid(TINY, ["schedule.name=fedavg,fedbuff"], sets=[*sets(glue_dir), "schedule.buffer_sise=2"])


def test_compare_runs_a_grid_across_schedules_whose_options_differ(glue_dir, tmp_path):
    from fedlora.cli import app
    from fedlora.sweep import _run_cell

    grid_sets = [*sets(glue_dir), "stop.versions=1", "schedule.buffer_size=2"]
    args = ["compare", str(TINY), "--vary", "schedule.name=fedavg,fedbuff", "--out", str(tmp_path / "g")]
    args += [f"--set={s}" for s in grid_sets]
    result = CliRunner().invoke(app, [*args, "--no-progress", "--no-report"])
    assert result.exit_code == 0, result.output
    done = summaries(tmp_path / "g")
    assert set(done) == {"schedule.name=fedavg/seed=0", "schedule.name=fedbuff/seed=0"}
    assert all(s["totals"]["versions"] == 1 for s in done.values())
    # a worker process reloads its cell's config the same way (--jobs > 1)
    g = build_grid(TINY, ["schedule.name=fedavg,fedbuff"], sets=grid_sets, out=tmp_path / "g")
    cell = g.cells[1]
    summary, _ = _run_cell(1, str(TINY), g.cell_overrides(cell), str(tmp_path / "again"), g.switched)
    assert deterministic(summary) == deterministic(done["schedule.name=fedbuff/seed=0"])


def deterministic(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("timing", "run_dir")}
