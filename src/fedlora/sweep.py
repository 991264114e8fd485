"""A grid of experiments (varied values x seeds), each cell an ordinary run directory: `fedlora compare`.

Why a grid of plain run directories: small GLUE tasks are high-variance, so a comparison needs several
seeds per method, and a grid of hours must survive interruptions. Each cell is exactly what
`fedlora run --resume` would produce, so `run_experiment(..., resume=True)` gives skipping (finished
cells return their stored summary) and resuming (interrupted cells continue from their checkpoint) for
free, and `fedlora report` reads cells like any other run. Directory names are stable and readable
(`DIR/aggregator.name=hlora__schedule.name=fedfa/seed=0`) so reruns find their cells again.
"""

from __future__ import annotations

import difflib
import json
import os
import queue as queue_mod
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import product
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from rich.markup import escape

from fedlora.config import ExperimentConfig, NamedChoice, dump_config, load_config
from fedlora.errors import ConfigError, FedLoraError
from fedlora.io.rundir import RunDir

GRID_FILE = "grid.json"
_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._,+-=")


@dataclass(frozen=True)
class Axis:
    """One `--vary key=v1,v2`: the values as typed (for directory names and overrides)."""

    key: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a value for every axis and a seed."""

    assignment: tuple[tuple[str, str], ...]  # (key, value as typed)
    seed: int
    out: Path

    @property
    def group(self) -> str:
        """The directory of all seeds of this assignment, relative to the grid directory ('' without axes)."""
        return "__".join(f"{k}={_safe(v)}" for k, v in self.assignment)

    @property
    def rel(self) -> str:
        return f"{self.group}/seed={self.seed}" if self.group else f"seed={self.seed}"

    @property
    def path(self) -> Path:
        return self.out / self.rel

    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.assignment] + [f"seed={self.seed}"]


@dataclass
class Grid:
    """A validated grid: every cell's config was loaded before anything runs, so typos fail in seconds."""

    config: Path | None
    sets: list[str]
    axes: list[Axis]
    seeds: list[int]
    out: Path
    cells: list[Cell]
    configs: list[ExperimentConfig] = field(repr=False)
    #: named-choice sections whose `name` is an axis: each cell drops the options its choice does not take
    switched: list[str] = field(default_factory=list)

    def cell_overrides(self, cell: Cell) -> list[str]:
        return [*self.sets, *cell.overrides()]


@dataclass
class CellOutcome:
    cell: Cell
    action: Literal["skipped", "resumed", "ran", "failed"]
    summary: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0


# ----- parsing -------------------------------------------------------------------------------------------


def split_values(text: str) -> list[str]:
    """Split 'a,b,[c,d]' on top-level commas (YAML lists and mappings keep their commas)."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def parse_vary(text: str) -> Axis:
    """'aggregator.name=hlora,zeropad' -> Axis('aggregator.name', ('hlora', 'zeropad')), with the key checked."""
    if "=" not in text:
        raise ConfigError(f"--vary {text!r}: expected key=v1,v2,..., e.g. --vary aggregator.name=hlora,zeropad")
    key, raw = (s.strip() for s in text.split("=", 1))
    labels = tuple(split_values(raw))
    if any(v == "" for v in labels):
        raise ConfigError(f"--vary {text!r}: empty value; write the values comma-separated, e.g. {key}=a,b")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--vary {text!r}: a value is listed twice")
    check_config_key(key, flag="--vary")
    return Axis(key, labels)


def parse_seeds(text: str | int) -> list[int]:
    """'3' -> [0, 1, 2] (that many seeds from 0); '0,5,7' -> exactly those seeds."""
    s = str(text).strip()
    try:
        if "," in s:
            seeds = [int(x) for x in s.split(",") if x.strip()]
        else:
            n = int(s)
            if n < 1:
                raise ValueError
            seeds = list(range(n))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a count (--seeds 3 runs seeds 0,1,2) or a list (0,5,7)") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: a seed is listed twice")
    return seeds


def check_config_key(key: str, flag: str = "--vary") -> None:
    """Raise a ConfigError naming the first part of dotted `key` that is not a config field, with the fix."""
    if key == "seed":
        raise ConfigError(f"{flag} seed: seeds are a grid axis of their own; use --seeds 3 (or --seeds 0,5,7)")
    model: type[BaseModel] = ExperimentConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        fields = _fields_of(model)
        if part not in fields:
            section = ".".join(parts[:i]) or "the top level"
            close = difflib.get_close_matches(part, list(fields), n=1)
            hint = f"did you mean {'.'.join([*parts[:i], close[0]])}? " if close else ""
            raise ConfigError(
                f"{flag} {key}: {here} is not a config field; {hint}{section} has: {', '.join(sorted(fields))} "
                "(`fedlora config-reference` lists every field)"
            )
        sub = fields[part]
        if i < len(parts) - 1:
            if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
                raise ConfigError(f"{flag} {key}: {here} is a value, not a section; vary {here} itself")
            model = sub


def _fields_of(model: type[BaseModel]) -> dict[str, Any]:
    """Field name -> annotation; a named choice also offers every option of every registered implementation."""
    fields: dict[str, Any] = {name: f.annotation for name, f in model.model_fields.items()}
    if issubclass(model, NamedChoice):
        registry = model.__private_attributes__["_registry"].default
        for impl in registry.names():
            for name, f in registry.get(impl).Options.model_fields.items():
                fields.setdefault(name, f.annotation)
    return fields


def _safe(label: str) -> str:
    """A value as a directory-name component: readable, no path separators or shell-hostile characters.

    YAML flow values lose their brackets and spaces: '{name: fedbuff, buffer_size: 5}' -> 'name-fedbuff,buffer_size-5'.
    """
    text = "".join(ch for ch in label if ch not in "{}[] ").replace(":", "-")
    return "".join(ch if ch in _SAFE else "_" for ch in text) or "_"


# ----- the grid ------------------------------------------------------------------------------------------


def default_out(config: str | Path | None, cfg: ExperimentConfig) -> Path:
    stem = Path(config).stem if config is not None else "grid"
    return Path(cfg.output.dir) / f"compare-{stem}"


def build_grid(
    config: str | Path | None,
    vary: Sequence[str] = (),
    seeds: str | int = 1,
    sets: Sequence[str] = (),
    out: str | Path | None = None,
) -> Grid:
    """Parse `--vary`/`--seeds`, validate every cell's config, and fix each cell's directory."""
    axes = [parse_vary(v) for v in vary]
    keys = [a.key for a in axes]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ConfigError(f"--vary {dup[0]} is given twice; list all its values in one --vary {dup[0]}=a,b")
    seed_list = parse_seeds(seeds)
    switched = switched_sections(keys)
    base = load_config(config, list(sets), switched=switched)
    root = Path(out) if out is not None else default_out(config, base)
    cells, configs = [], []
    for combo in product(*(a.labels for a in axes)):
        assignment = tuple(zip(keys, combo, strict=True))
        for seed in seed_list:
            cell = Cell(assignment, seed, root)
            try:
                configs.append(load_config(config, [*sets, *cell.overrides()], switched=switched))
            except ConfigError as exc:
                where = " ".join(f"{k}={v}" for k, v in assignment) or "the base config"
                raise ConfigError(f"grid cell {where} (seed {seed}): {exc}") from None
            cells.append(cell)
    paths = [c.path for c in cells]
    clash = sorted({p for p in paths if paths.count(p) > 1})
    if clash:
        raise ConfigError(
            f"two --vary values give the same directory {clash[0]}; values differing only in characters "
            "outside letters, digits and ._,+-= are indistinguishable in directory names"
        )
    return Grid(
        Path(config) if config is not None else None, list(sets), axes, seed_list, root, cells, configs, switched
    )


def switched_sections(keys: Sequence[str]) -> list[str]:
    """The named-choice sections (schedule, aggregator, partition, clients.ranks) whose `name` is varied.

    A cell of `--vary schedule.name=fedavg,fedbuff` keeps, of the schedule options the base config and
    `--set` give, those its schedule takes: every method can get its own options in one grid.
    """
    out = []
    for key in keys:
        section = key.removesuffix(".name")
        if key.endswith(".name") and _is_named_choice(section):
            out.append(section)
    return out


def _is_named_choice(section: str) -> bool:
    model: Any = ExperimentConfig
    for part in section.split("."):
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        if part not in fields:
            return False
        model = fields[part].annotation
    return isinstance(model, type) and issubclass(model, NamedChoice)


def cell_state(cell: Cell, cfg: ExperimentConfig) -> Literal["finished", "interrupted", "new"]:
    rd = RunDir(cell.path)
    if rd.config.is_file() and rd.config.read_text() != dump_config(cfg):
        raise ConfigError(
            f"{rd.path} holds a run of a different config ({rd.config} differs from this grid's cell); "
            "use another --out for a different base config or --set values"
        )
    if rd.is_finished():
        return "finished"
    return "interrupted" if rd.has_checkpoint() else "new"


# ----- the manifest --------------------------------------------------------------------------------------


def manifest(grid: Grid, outcomes: dict[Path, CellOutcome]) -> dict[str, Any]:
    """grid.json: what was varied and where each cell lives, so `fedlora report` can label groups."""
    cells = []
    for cell, cfg in zip(grid.cells, grid.configs, strict=True):
        o = outcomes.get(cell.path)
        rd = RunDir(cell.path)
        status = "finished" if rd.is_finished() else ("failed" if o and o.action == "failed" else "pending")
        entry: dict[str, Any] = {
            "dir": cell.rel,
            "group": cell.group,
            "values": {k: _value_at(cfg, k) for k, _ in cell.assignment},
            "seed": cell.seed,
            "status": status,
        }
        if o is not None and o.error:
            entry["error"] = o.error
        cells.append(entry)
    previous = _read_manifest(grid.out)
    keep = [c for c in previous.get("cells", []) if c["dir"] not in {e["dir"] for e in cells}]
    vary = {a.key: list(a.labels) for a in grid.axes}
    for k, v in previous.get("vary", {}).items():
        vary[k] = v + [x for x in vary.get(k, []) if x not in v] if k in vary else v
    return {
        "fedlora_grid": 1,
        "config": str(grid.config.resolve()) if grid.config else None,
        "set": grid.sets,
        "vary": vary,
        "seeds": sorted(set(grid.seeds) | set(previous.get("seeds", []))),
        "cells": keep + cells,
    }


def _read_manifest(out: Path) -> dict[str, Any]:
    path = out / GRID_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_manifest(grid: Grid, outcomes: dict[Path, CellOutcome]) -> None:
    grid.out.mkdir(parents=True, exist_ok=True)
    RunDir(grid.out).write_json(grid.out / GRID_FILE, manifest(grid, outcomes))


def _value_at(cfg: ExperimentConfig, dotted: str) -> Any:
    node: Any = cfg.model_dump(mode="json")
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


# ----- workers --------------------------------------------------------------------------------------------


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def plan_workers(jobs: int, cells: int, cores: int, threads: int | None) -> tuple[int, int]:
    """(processes, torch threads per process) with processes x threads <= cores, at least (1, 1).

    `threads` is training.threads when the config sets it (then it is kept and processes shrink);
    otherwise each process gets an equal share of the cores.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be >= 1")
    if threads:
        procs = max(1, min(jobs, cells, cores // threads))
        return procs, threads
    procs = max(1, min(jobs, cells, cores))
    return procs, max(1, cores // procs)


_worker_queue: Any = None


def _init_worker(threads: int, progress_queue: Any) -> None:
    """Runs once in each spawned process: share the cores, and report versions to the parent's bars."""
    global _worker_queue
    import torch

    torch.set_num_threads(threads)
    _worker_queue = progress_queue


def _run_cell(
    index: int, config: str | None, overrides: list[str], out: str, switched: Sequence[str] = ()
) -> tuple[dict[str, Any], float]:
    """One cell in a worker process (the config is reloaded there, exactly as the parent validated it).

    Returns the summary and the seconds the cell itself took (not counting its wait in the queue).
    """
    from fedlora.experiment import run_experiment

    def on_version(server: Any) -> None:
        if _worker_queue is not None:
            _worker_queue.put((index, server.version))

    t0 = time.perf_counter()
    cfg = load_config(config, overrides, switched=switched)
    summary = run_experiment(cfg, out=out, resume=True, on_version=on_version, progress=False)
    return summary, time.perf_counter() - t0


# ----- running ------------------------------------------------------------------------------------------


class _Bars:
    """The overall bar plus one bar per running cell (rich), or nothing when disabled."""

    def __init__(self, total: int, enabled: bool, console: Any = None):
        self.progress = None
        self.console = console  # per-cell lines still go here when the bars are off
        self.tasks: dict[int, Any] = {}
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )
            self.overall = self.progress.add_task("[bold]grid", total=total)

    def __enter__(self) -> _Bars:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False)
        elif self.console is not None:
            self.console.print(text, highlight=False)

    def cell(self, index: int, name: str, total: int | None, done: int = 0) -> None:
        if self.progress is not None and index not in self.tasks:
            self.tasks[index] = self.progress.add_task(f"  {name}", total=total, completed=done)

    def version(self, index: int, version: int) -> None:
        if self.progress is not None and index in self.tasks:
            self.progress.update(self.tasks[index], completed=version)

    def finish(self, index: int) -> None:
        if self.progress is None:
            return
        if index in self.tasks:
            self.progress.remove_task(self.tasks.pop(index))
        self.progress.advance(self.overall)


def run_grid(
    grid: Grid,
    jobs: int = 1,
    progress: bool = True,
    console: Any = None,
    cores: int | None = None,
) -> list[CellOutcome]:
    """Run every cell not yet finished (in `jobs` processes when cores allow); update grid.json as cells end.

    A failing cell does not stop the others: it is reported in its outcome and in grid.json. Results do not
    depend on `jobs`: every number comes from seeded draws and the virtual clock, never from the scheduling.
    """
    states = [cell_state(c, cfg) for c, cfg in zip(grid.cells, grid.configs, strict=True)]
    outcomes: dict[Path, CellOutcome] = {}
    _write_manifest(grid, outcomes)
    todo = [i for i, s in enumerate(states) if s != "finished"]
    threads = max((cfg.training.threads or 0 for cfg in grid.configs), default=0) or None
    procs, per_proc = plan_workers(jobs, max(1, len(todo)), cores or available_cores(), threads)

    with _Bars(len(grid.cells), progress, console) as bars:

        def done(i: int, outcome: CellOutcome) -> None:
            outcomes[grid.cells[i].path] = outcome
            _write_manifest(grid, outcomes)
            bars.finish(i)
            bars.print(_describe(outcome))

        for i, s in enumerate(states):
            if s == "finished":
                summary = RunDir(grid.cells[i].path).read_json(RunDir(grid.cells[i].path).summary)
                done(i, CellOutcome(grid.cells[i], "skipped", summary))
        action = {i: ("resumed" if states[i] == "interrupted" else "ran") for i in todo}
        if procs <= 1:
            for i in todo:
                done(i, _run_serial(grid, i, action[i], bars))
        else:
            bars.print(f"running {len(todo)} cells in {procs} processes x {per_proc} torch threads")
            for i, outcome in _run_parallel(grid, todo, action, procs, per_proc, bars):
                done(i, outcome)
    return [outcomes[c.path] for c in grid.cells]


def _run_serial(grid: Grid, i: int, action: Literal["resumed", "ran"], bars: _Bars) -> CellOutcome:
    from fedlora.experiment import run_experiment

    cell, cfg = grid.cells[i], grid.configs[i]
    bars.cell(i, cell.rel, cfg.stop.versions)
    t0 = time.perf_counter()
    try:
        summary = run_experiment(
            cfg, out=cell.path, resume=True, on_version=lambda s: bars.version(i, s.version), progress=False
        )
    except Exception as exc:  # one broken cell must not cost the others; the error is reported and recorded
        return CellOutcome(cell, "failed", error=_error_text(exc), seconds=time.perf_counter() - t0)
    return CellOutcome(cell, action, summary, seconds=time.perf_counter() - t0)


def _run_parallel(
    grid: Grid,
    todo: list[int],
    action: dict[int, Literal["resumed", "ran"]],
    procs: int,
    threads: int,
    bars: _Bars,
) -> Iterator[tuple[int, CellOutcome]]:
    ctx = get_context("spawn")  # a fresh interpreter per worker: no forked torch thread pools or locks
    progress_queue = ctx.Queue()
    config = str(grid.config) if grid.config is not None else None
    with ProcessPoolExecutor(procs, mp_context=ctx, initializer=_init_worker, initargs=(threads, progress_queue)) as ex:
        started: dict[Future, tuple[int, float]] = {}
        for i in todo:
            overrides, path = grid.cell_overrides(grid.cells[i]), str(grid.cells[i].path)
            fut = ex.submit(_run_cell, i, config, overrides, path, grid.switched)
            started[fut] = (i, time.perf_counter())
        pending = set(started)
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress_queue, grid, bars)
                for fut in finished:
                    i, t0 = started[fut]
                    cell = grid.cells[i]
                    try:
                        summary, seconds = fut.result()
                    except Exception as exc:
                        yield i, CellOutcome(cell, "failed", error=_error_text(exc), seconds=time.perf_counter() - t0)
                    else:
                        yield i, CellOutcome(cell, action[i], summary, seconds=seconds)
        except BaseException:
            ex.shutdown(wait=False, cancel_futures=True)
            raise
    _drain(progress_queue, grid, bars)


def _drain(progress_queue: Any, grid: Grid, bars: _Bars) -> None:
    while True:
        try:
            i, version = progress_queue.get_nowait()
        except queue_mod.Empty:
            return
        bars.cell(i, grid.cells[i].rel, grid.configs[i].stop.versions)
        bars.version(i, version)


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FedLoraError) else f"{type(exc).__name__}: {exc}"


def _describe(o: CellOutcome) -> str:
    if o.action == "failed":
        return f"[red]failed[/red]  {escape(o.cell.rel)}: {escape(str(o.error))}"
    final = (o.summary or {}).get("final") or {"metrics": {}}
    metrics = " ".join(f"{k}={v:.4f}" for k, v in final["metrics"].items() if k != "loss")
    took = f" in {o.seconds:.1f} s" if o.action != "skipped" else " (finished earlier)"
    return f"{o.action:<8} {escape(o.cell.rel)}: {metrics}{took}"


def compare(
    config: str | Path | None,
    vary: Sequence[str] = (),
    seeds: str | int = 1,
    sets: Sequence[str] = (),
    out: str | Path | None = None,
    jobs: int = 1,
    progress: bool = True,
    console: Any = None,
    on_grid: Callable[[Grid], None] | None = None,
    cores: int | None = None,
) -> tuple[Grid, list[CellOutcome]]:
    """`fedlora compare` as a function: build the grid, then run what is not finished."""
    grid = build_grid(config, vary, seeds, sets, out)
    if on_grid is not None:
        on_grid(grid)
    return grid, run_grid(grid, jobs=jobs, progress=progress, console=console, cores=cores)


def load_manifest(directory: str | Path) -> dict[str, Any]:
    """The grid.json of a compare output directory ({} when there is none)."""
    return _read_manifest(Path(directory))
