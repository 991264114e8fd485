"""Tables over seeds from run directories: `fedlora report`.

Why: one seed proves nothing on small GLUE tasks, so every number a method comparison shows is a mean and a
standard deviation over seeds, computed from nothing but the runs' own summary.json files (so anyone can
recompute them). Runs are grouped by their config minus the seed (or by chosen keys); groups are labelled
by the keys that differ between them, in the order a compare grid varied them.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fedlora.errors import FedLoraError
from fedlora.io.rundir import RunDir
from fedlora.sweep import GRID_FILE, load_manifest

MISSING = object()  # a config key a run does not have (e.g. an option of another aggregator)

#: config keys that never separate methods: the seed is what a group averages over, the rest is bookkeeping.
IGNORED_PREFIXES = ("seed", "output.", "task.data_dir", "training.threads")


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]  # flattened: dotted key -> value (lists as YAML flow text)
    summary: dict[str, Any]

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))


@dataclass
class Group:
    label: str
    key: tuple[tuple[str, Any], ...]
    runs: list[Run] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None  # sample standard deviation (ddof=1); None with fewer than two values
    n: int
    integral: bool = False  # every value a whole number (bytes, versions, samples): shown without decimals


# ----- finding runs ----------------------------------------------------------------------------------------


def find_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[Path], list[str]]:
    """(finished runs, unfinished run directories, varied keys from grid.json files) under `paths`.

    A path is a run directory (it holds summary.json or config.yaml) or any parent of run directories,
    e.g. a `fedlora compare` output.
    """
    runs: dict[Path, Run] = {}
    unfinished: list[Path] = []
    varied: list[str] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FedLoraError(f"{p} does not exist; give run directories or a compare output directory")
        dirs = [p] if (p / "config.yaml").is_file() else sorted({c.parent for c in p.rglob("config.yaml")})
        # the grid a run belongs to (an ancestor) or the grids below a parent directory
        for manifest_dir in [p.resolve(), *p.resolve().parents, *(m.parent for m in p.rglob(GRID_FILE))]:
            for key in load_manifest(manifest_dir).get("vary", {}):
                if key not in varied:
                    varied.append(key)
        for d in dirs:
            rd = RunDir(d)
            if not rd.is_finished():
                unfinished.append(d)
                continue
            cfg = flatten(yaml.safe_load(rd.config.read_text()) or {})
            runs.setdefault(d.resolve(), Run(d, cfg, rd.read_json(rd.summary)))
    if not runs:
        where = ", ".join(str(p) for p in paths)
        raise FedLoraError(f"no finished run directories (with summary.json) under {where}")
    return list(runs.values()), unfinished, varied


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = _hashable(v)
    return out


def _hashable(v: Any) -> Any:
    if isinstance(v, (list, dict)):
        return yaml.safe_dump(v, default_flow_style=True).strip()
    return v


def _ignored(key: str) -> bool:
    return any(key == p.rstrip(".") or (p.endswith(".") and key.startswith(p)) for p in IGNORED_PREFIXES)


# ----- grouping --------------------------------------------------------------------------------------------


def group_runs(runs: Sequence[Run], group_by: Sequence[str] = (), varied: Sequence[str] = ()) -> list[Group]:
    """Runs with equal configs (minus seed and bookkeeping), or equal `group_by` values, form one group."""
    all_keys = sorted({k for r in runs for k in r.config})
    for key in group_by:
        if key not in all_keys:
            close = difflib.get_close_matches(key, all_keys, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else "; keys look like aggregator.name"
            raise FedLoraError(f"--group-by {key}: no run has this config key{hint}")
    keys = list(group_by) if group_by else [k for k in all_keys if not _ignored(k)]
    groups: dict[tuple, Group] = {}
    for r in sorted(runs, key=lambda r: (str(r.path.parent), r.seed, str(r.path))):
        key = tuple((k, r.config.get(k, MISSING)) for k in keys)
        groups.setdefault(key, Group("", key)).runs.append(r)
    differing = [k for k in keys if len({_text(dict(g.key).get(k)) for g in groups.values()}) > 1]
    order: list[str] = []
    for v in varied:  # a varied whole section (--vary 'schedule={...},{...}') labels by its name first
        under = [k for k in differing if k == v or k.startswith(v + ".")]
        order += sorted((k for k in under if k not in order), key=lambda k: (k != f"{v}.name", k))
    order += [k for k in differing if k not in order]
    if group_by:
        order = list(group_by)
    for g in groups.values():
        g.label = _label(dict(g.key), order, g.runs[0])
    return sorted(groups.values(), key=lambda g: _sort_key(g, order))


def _label(values: dict[str, Any], order: Sequence[str], run: Run) -> str:
    if not order:
        return f"{run.config.get('aggregator.name', '?')} + {run.config.get('schedule.name', '?')}"
    # a key this group's config does not have at all (another implementation's option) is left out
    return ", ".join(f"{_short(k)}={_text(values[k])}" for k in order if values.get(k, MISSING) is not MISSING)


def _short(key: str) -> str:
    """'aggregator.name' -> 'aggregator' (the name of a choice is the choice); other keys stay whole."""
    return key.removesuffix(".name") if key.endswith(".name") and key.count(".") == 1 else key


def _text(v: Any) -> str:
    if v is MISSING:
        return ""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _sort_key(g: Group, order: Sequence[str]) -> tuple:
    vals = dict(g.key)
    return tuple(
        (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, _text(v))
        for v in (vals.get(k, MISSING) for k in order)
    )


# ----- numbers per run -------------------------------------------------------------------------------------


def run_metrics(summary: dict[str, Any], target: float | None = None) -> dict[str, float]:
    """The numbers a table shows, from one summary.json; absent parts (no local metrics...) are just absent.

    With `target`, time to target is recomputed from the evaluation history (the first evaluation whose
    metric reaches it), so runs that were not stopped at a target can still be compared on it.
    """
    out: dict[str, float] = {}
    primary = summary.get("metric", "accuracy")
    final = summary.get("final") or {}
    for m, v in (final.get("metrics") or {}).items():
        out[f"final.{m}"] = v
    best = summary.get("best")
    if best:
        out[f"best.{primary}"] = best["metrics"].get(primary)
        out["best.version"] = best["version"]
    reached = _time_to_target(summary, primary, target) if target is not None else summary.get("time_to_target")
    if reached:
        for k in ("version", "virtual_s", "samples", "bytes"):
            if k in reached:
                out[f"target.{k}"] = reached[k]
    for budget, point in (summary.get("at_time") or {}).items():
        for m, v in ((point or {}).get("metrics") or {}).items():
            out[f"at_time.{budget}.{m}"] = v
    totals = summary.get("totals") or {}
    for k in ("versions", "virtual_seconds", "samples_trained", "bytes_up", "bytes_down", "staleness_mean"):
        if k in totals:
            out[f"totals.{k}"] = totals[k]
    out.update(_numeric_leaves(summary.get("local"), "local"))
    return {k: float(v) for k, v in out.items() if _is_number(v)}


def _time_to_target(summary: dict[str, Any], metric: str, target: float) -> dict[str, Any] | None:
    for p in summary.get("history") or []:
        if p["metrics"].get(metric, float("-inf")) >= target:
            return p
    return None


def _numeric_leaves(node: Any, prefix: str) -> dict[str, float]:
    if isinstance(node, dict):
        out: dict[str, float] = {}
        for k, v in node.items():
            out.update(_numeric_leaves(v, f"{prefix}.{k}"))
        return out
    return {prefix: node} if _is_number(node) else {}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def stat(values: Sequence[float]) -> Stat:
    if not values:
        return Stat(None, None, 0)
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else None
    return Stat(float(arr.mean()), std, len(arr), bool(np.all(arr == np.round(arr))))


# ----- the table -------------------------------------------------------------------------------------------

_ORDER = (
    "final.",
    "best.",
    "at_time.",
    "target.virtual_s",
    "target.samples",
    "target.",
    "totals.virtual_seconds",
    "totals.versions",
    "totals.bytes_up",
    "totals.bytes_down",
    "totals.staleness_mean",
    "totals.",
    "local.",
)
_HIDDEN = {"final.loss", "best.version", "target.version", "target.bytes", "totals.samples_trained"}
_HEADERS = {
    "target.virtual_s": "virtual s to target",
    "target.samples": "samples to target",
    "totals.versions": "versions",
    "totals.virtual_seconds": "virtual s",
    "totals.bytes_up": "bytes up",
    "totals.bytes_down": "bytes down",
    "totals.staleness_mean": "staleness",
}


@dataclass
class Table:
    """Groups x metrics of Stats; `columns` is every metric some run has, `shown` the ones printed."""

    groups: list[Group]
    columns: list[str]
    cells: dict[str, dict[str, Stat]]  # group label -> metric -> Stat
    per_run: list[tuple[Group, Run, dict[str, float]]]

    @property
    def shown(self) -> list[str]:
        return [c for c in self.columns if c not in _HIDDEN and not (c.startswith("at_time.") and c.endswith(".loss"))]


def build_table(groups: Sequence[Group], target: float | None = None) -> Table:
    per_run = [(g, r, run_metrics(r.summary, target)) for g in groups for r in g.runs]
    names = {k for _, _, m in per_run for k in m}
    columns = sorted(names, key=_column_key)
    cells = {g.label: {c: stat([m[c] for gg, _, m in per_run if gg is g and c in m]) for c in columns} for g in groups}
    return Table(list(groups), columns, cells, per_run)


def _column_key(name: str) -> tuple[int, str]:
    for i, prefix in enumerate(_ORDER):
        if name.startswith(prefix):
            return (i, name)
    return (len(_ORDER), name)


def header(column: str) -> str:
    if column in _HEADERS:
        return _HEADERS[column]
    kind, _, metric = column.partition(".")
    if kind == "at_time":
        budget, _, m = metric.partition(".")
        return f"{m} at {budget} virtual s"
    return f"{kind} {metric}" if kind in ("final", "best", "local") else column


def decimals(x: float, integral: bool = False) -> int:
    """Decimals for a mean of this size (and its std, so both line up): 4 below 1, 3 below 10, ..."""
    if integral:  # counts: whole numbers stay whole, a mean between them gets one decimal
        return 0 if x == round(x) else 1
    ax = abs(x)
    return 4 if ax < 1 else 3 if ax < 10 else 2 if ax < 100 else 1 if ax < 1000 else 0


def fmt(x: float | None, places: int | None = None) -> str:
    if x is None:
        return "-"
    return f"{x:,.{decimals(x) if places is None else places}f}"


def cell_text(s: Stat, group_size: int) -> str:
    if s.n == 0 or s.mean is None:
        return "-"
    places = decimals(s.mean, s.integral)
    text = fmt(s.mean, places) if s.std is None else f"{fmt(s.mean, places)} ± {fmt(s.std, places)}"
    return text if s.n == group_size else f"{text} ({s.n}/{group_size})"


def rows(table: Table) -> list[list[str]]:
    """The shown table as text: a header row, then one row per group (method, seeds, metric cells)."""
    head = ["method", "seeds", *(header(c) for c in table.shown)]
    body = [
        [g.label, str(len(g.runs)), *(cell_text(table.cells[g.label][c], len(g.runs)) for c in table.shown)]
        for g in table.groups
    ]
    return [head, *body]


def to_markdown(table: Table) -> str:
    head, *body = rows(table)
    esc = [[c.replace("|", "\\|") for c in row] for row in [head, *body]]
    lines = ["| " + " | ".join(esc[0]) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """One row per group; every metric as mean, std and n columns, full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "runs", "seeds", *(f"{c}_{s}" for c in table.columns for s in ("mean", "std", "n"))])
    for g in table.groups:
        vals: list[Any] = [g.label, len(g.runs), " ".join(str(s) for s in g.seeds)]
        for c in table.columns:
            s = table.cells[g.label][c]
            vals += ["" if s.mean is None else repr(s.mean), "" if s.std is None else repr(s.std), s.n]
        w.writerow(vals)
    return buf.getvalue()


def runs_csv(table: Table) -> str:
    """One row per run: the raw numbers behind every mean (to recompute or to plot otherwise)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "seed", "run_dir", *table.columns])
    for g, r, m in table.per_run:
        w.writerow([g.label, r.seed, str(r.path), *("" if c not in m else repr(m[c]) for c in table.columns)])
    return buf.getvalue()


def print_table(table: Table, console: Any = None, title: str | None = None) -> None:
    """Print with rich; columns that do not fit the console go to further tables (numbers never wrap)."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = console or Console()
    head, *body = rows(table)
    label_width = min(max(len(r[0]) for r in [head, *body]), 32)
    widths = [max(max(len(r[i]) for r in body), *(len(w) for w in head[i].split())) for i in range(len(head))]
    chunks: list[list[int]] = [[]]
    used = label_width + 4
    for i in range(1, len(head)):
        if chunks[-1] and used + widths[i] + 3 > console.width:
            chunks.append([])
            used = label_width + 4
        chunks[-1].append(i)
        used += widths[i] + 3
    for k, cols in enumerate(chunks):
        t = RichTable(title=title if k == 0 else None)
        t.add_column(head[0], min_width=label_width, overflow="fold")
        for i in cols:
            t.add_column(head[i], justify="right", min_width=widths[i])
        for r in body:
            t.add_row(r[0], *(r[i] for i in cols))
        console.print(t)


# ----- the report directory -------------------------------------------------------------------------------


@dataclass
class Report:
    table: Table
    out: Path
    files: list[Path]
    unfinished: list[Path]


def default_out(paths: Sequence[str | Path]) -> Path:
    """DIR/report for a single directory given (e.g. a compare output), else ./report."""
    if len(paths) == 1 and Path(paths[0]).is_dir() and not (Path(paths[0]) / "config.yaml").is_file():
        return Path(paths[0]) / "report"
    return Path("report")


def make_report(
    paths: Sequence[str | Path],
    out: str | Path | None = None,
    group_by: Sequence[str] = (),
    target: float | None = None,
    metric: str | None = None,
    figures: bool = True,
    command: str | None = None,
) -> Report:
    """Find runs, group them, write report.md, summary.csv, runs.csv and the figures under `out`."""
    out_dir = Path(out) if out is not None else default_out(paths)
    runs, unfinished, varied = find_runs(paths)
    groups = group_runs(runs, group_by, varied)
    table = build_table(groups, target)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "summary.csv", out_dir / "runs.csv"]
    files[0].write_text(to_csv(table))
    files[1].write_text(runs_csv(table))
    figs: list[Path] = []
    if figures:
        from fedlora.figures import plot_curves

        figs = plot_curves(groups, out_dir, metric or _primary(runs))
    md = out_dir / "report.md"
    md.write_text(_markdown_report(table, figs, out_dir, unfinished, command, target))
    return Report(table, out_dir, [md, *files, *figs], unfinished)


def _primary(runs: Sequence[Run]) -> str:
    return str(runs[0].summary.get("metric", "accuracy"))


def _markdown_report(
    table: Table, figs: Sequence[Path], out: Path, unfinished: Sequence[Path], command: str | None, target: float | None
) -> str:
    parts = ["# fedlora report", ""]
    if command:
        parts += ["Produced by:", "", "```", command, "```", ""]
    parts += [
        f"{sum(len(g.runs) for g in table.groups)} runs in {len(table.groups)} groups. Cells show mean ± sample "
        "standard deviation over seeds; (k/n) marks a number that only k of n runs have"
        + (f" (e.g. runs that never reached the target {target})." if target is not None else "."),
        "",
        to_markdown(table),
    ]
    for g in table.groups:
        seeds = ", ".join(str(s) for s in g.seeds)
        parts.append(f"- **{g.label}**: seeds {seeds}; {', '.join(str(r.path) for r in g.runs)}")
    if unfinished:
        parts += ["", "Not finished (left out): " + ", ".join(str(p) for p in unfinished)]
    if figs:
        parts += ["", "## Figures", ""]
        parts += [f"![{f.stem}]({f.relative_to(out)})" for f in figs]
    return "\n".join(parts) + "\n"
