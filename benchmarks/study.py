"""Studies whose finished runs accumulate as small records under docs/results/<study>/<cell>/.

Why: a study of dozens of runs on two CPU cores takes hours and a session can stop at any moment. Each
finished run keeps its resolved config.yaml and summary.json in the repository (no checkpoints, no
adapters), so a rerun skips what is recorded, an interrupted run resumes from its checkpoint under runs/,
and `fedlora report docs/results/<study>` rebuilds every table from the records alone.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from common import REPO, data_dir

#: where records accumulate; FEDLORA_RESULTS_DIR moves them (tests write to a temporary directory)
DOCS_RESULTS = Path(os.environ.get("FEDLORA_RESULTS_DIR") or REPO / "docs" / "results")


@dataclass(frozen=True)
class Cell:
    """One run of a study: a config file plus overrides, stored under `name`."""

    name: str
    config: str  # relative to the repository
    sets: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict, compare=False)

    def command(self) -> str:
        sets = " ".join(f"--set '{s}'" if any(c in s for c in " [{,") else f"--set {s}" for s in self.sets)
        return f"fedlora run {self.config} {sets}".strip()


def mean_std(values: list[float]) -> str:
    """Mean ± sample std over seeds, as every study table prints it."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def record_dir(study: str, cell: Cell) -> Path:
    return DOCS_RESULTS / study / cell.name


def load_record(study: str, cell: Cell) -> dict | None:
    p = record_dir(study, cell) / "summary.json"
    return json.loads(p.read_text()) if p.is_file() else None


def run_cell(study: str, cell: Cell, runs_root: Path, progress: bool = False) -> dict:
    """The cell's summary: from its record, else run (resuming a killed run) and record it."""
    from fedlora.config import load_config
    from fedlora.experiment import run_experiment

    done = load_record(study, cell)
    if done is not None:
        return done
    cfg = load_config(REPO / cell.config, [f"task.data_dir={data_dir()}", *cell.sets])
    out = runs_root / study / cell.name
    t0 = time.perf_counter()
    summary = run_experiment(cfg, out=out, resume=out.exists(), progress=progress)
    summary.setdefault("timing", {})["command_seconds"] = time.perf_counter() - t0
    rec = record_dir(study, cell)
    rec.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "config.yaml", rec / "config.yaml")
    slim = {k: v for k, v in summary.items() if k != "run_dir"}
    slim["command"] = cell.command()
    slim["tags"] = cell.tags
    (rec / "summary.json").write_text(json.dumps(slim, indent=1, sort_keys=True))
    return slim


def run_cells(study: str, cells: Sequence[Cell], runs_root: Path, progress: bool = False) -> list[dict]:
    out = []
    for i, cell in enumerate(cells):
        cached = load_record(study, cell) is not None
        print(f"[{study}] {i + 1}/{len(cells)} {cell.name}{' (recorded)' if cached else ''}", flush=True)
        out.append(run_cell(study, cell, runs_root, progress))
    return out


def _run(study: str, cell: Cell, runs_root: str) -> str:
    run_cell(study, cell, Path(runs_root))
    return cell.name


def run_all(study: str, todo: list[Cell], runs_root: Path, jobs: int) -> None:
    """Run the cells not yet recorded; a cell that fails is reported and the others go on (its run directory
    keeps the checkpoint for the next attempt), and the study then exits with the failures listed."""
    todo = [c for c in todo if load_record(study, c) is None]
    print(f"[{study}] {len(todo)} cells to run", flush=True)
    failed: list[str] = []

    def done(name: str, error: BaseException | None) -> None:
        if error is None:
            print(f"[{study}] {name} done", flush=True)
        else:
            failed.append(f"{name}: {type(error).__name__}: {error}")
            print(f"[{study}] {name} FAILED: {error}", flush=True)

    if jobs <= 1:
        for c in todo:
            try:
                _run(study, c, str(runs_root))
                done(c.name, None)
            except Exception as exc:  # one broken cell must not stop a study of hours
                done(c.name, exc)
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_run, study, c, str(runs_root)): c.name for c in todo}
            for future in as_completed(futures):
                done(futures[future], future.exception())
    if failed:
        raise SystemExit(f"[{study}] {len(failed)} cells failed:\n  " + "\n  ".join(failed))
