"""Heterogeneous ranks: HLoRA against zero-padding (sample and HetLoRA norm weights), FlexLoRA, FLoRA, FFA-LoRA,
the homogeneous rank-8 FedIT run, and a centralized reference at the same sample budget.

Runs configs/hetero/{task}_{method}.yaml (10 label-skewed clients, ranks {2, 4, 8, 16} by speed tier) for each
task and seed, one after another, and reports per task and method: final dev accuracy, F1 and loss (mean ± sample
std over seeds), the aggregation diagnostics logged with every version (energy lost to truncation, relative
error of the global update against the exact weighted sum of the clients' B·A), and bytes sent. Writes JSON
(benchmarks/results/hetero_ranks.json) and a plot of dev loss and accuracy per version.

    python benchmarks/hetero_ranks.py                       # the configs' own budgets (hours on a CPU)
    python benchmarks/hetero_ranks.py --quick --seeds 3     # a CPU budget: 4 versions of short local jobs

Finished runs are kept in --runs-dir and skipped when the script is started again, so an interrupted table
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, RESULTS, data_dir, save_figure

TASKS = ("mrpc", "rte")
#: method -> config stem in configs/hetero ("centralized" uses configs/centralized_mrpc.yaml)
METHODS = {
    "hlora": "hlora",
    "zeropad": "zeropad",
    "hetlora": "hetlora",
    "flexlora": "flexlora",
    "flora": "flora",
    "ffa": "ffa",
    "fedit_r8": "fedit_r8",
    "centralized": None,
}

#: --quick: every client of the 10 trains each version (as in the configs), but short jobs of batch 16 and
#: 4 versions; RTE's longer pairs get half the steps. The centralized reference trains the same samples.
QUICK_STEPS = {"mrpc": 4, "rte": 2}
QUICK_VERSIONS = 4


def config_for(task: str, method: str) -> Path:
    stem = METHODS[method]
    return REPO / "configs" / ("centralized_mrpc.yaml" if stem is None else f"hetero/{task}_{stem}.yaml")


def overrides_for(task: str, method: str, seed: int, quick: bool, threads: int) -> list[str]:
    out = [
        f"seed={seed}",
        f"task.data_dir={data_dir()}",
        "output.progress=false",
        "output.checkpoint_every=1000",
        f"training.threads={threads}",
    ]
    if method == "centralized":
        from fedlora.config import load_config

        fed = load_config(config_for(task, "hlora"))
        steps = QUICK_STEPS[task] if quick else fed.training.local_steps
        versions = QUICK_VERSIONS if quick else fed.stop.versions
        out += [
            f"task.name={task}",
            f"task.max_length={fed.task.max_length}",
            f"training.local_steps={steps * fed.clients.count}",  # the samples of one federated version
            f"stop.versions={versions}",
        ]
        if quick:
            out += ["training.batch_size=16"]
        else:
            out += [f"training.batch_size={fed.training.batch_size}", f"training.lr={fed.training.lr}"]
            out += [f"training.head_lr={fed.training.head_lr}"]
    elif quick:
        out += [
            f"training.local_steps={QUICK_STEPS[task]}",
            "training.batch_size=16",
            "training.lr=0.002",
            "training.head_lr=0.004",
            f"stop.versions={QUICK_VERSIONS}",
        ]
    return out


def aggregation_diagnostics(run_dir: Path) -> dict[str, float]:
    """Means over the run's aggregations of the diagnostics the aggregator logged."""
    keys = ("energy_lost", "rel_error")
    values: dict[str, list[float]] = {k: [] for k in keys}
    with open(run_dir / "events.jsonl") as f:
        for line in f:
            e = json.loads(line)
            if e.get("event") == "aggregation":
                for k in keys:
                    if isinstance(e.get(k), (int, float)):
                        values[k].append(float(e[k]))
    return {k: statistics.fmean(v) for k, v in values.items() if v}


def run_one(task: str, method: str, seed: int, quick: bool, threads: int, run_dir: Path) -> dict[str, Any]:
    summary_path = run_dir / "summary.json"
    t0 = time.perf_counter()
    if not summary_path.exists():
        from fedlora.config import load_config
        from fedlora.experiment import run_experiment

        cfg = load_config(config_for(task, method), overrides_for(task, method, seed, quick, threads))
        run_experiment(cfg, out=run_dir, resume=(run_dir / "checkpoints").exists())
    summary = json.loads(summary_path.read_text())
    totals = summary["totals"]
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "run_dir": str(run_dir),
        "final": summary["final"]["metrics"],
        "curve": [(p["version"], p["metrics"]) for p in summary["history"]],
        "versions": totals["versions"],
        "samples_trained": totals["samples_trained"],
        "bytes_up": totals.get("bytes_up"),
        "bytes_down": totals.get("bytes_down"),
        "diagnostics": aggregation_diagnostics(run_dir),
        "real_seconds": round(time.perf_counter() - t0, 1),
    }


def mean_std(xs: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for task in TASKS:
        for method in METHODS:
            group = [r for r in runs if r["task"] == task and r["method"] == method]
            if not group:
                continue
            row: dict[str, Any] = {"task": task, "method": method, "seeds": len(group)}
            for m in ("accuracy", "f1", "loss"):  # RTE has no F1
                values = [r["final"][m] for r in group if m in r["final"]]
                row[m], row[f"{m}_std"] = mean_std(values) if values else (None, None)
            for k in ("energy_lost", "rel_error"):
                vals = [r["diagnostics"][k] for r in group if k in r["diagnostics"]]
                row[k] = statistics.fmean(vals) if vals else None
            for k in ("samples_trained", "bytes_up", "bytes_down"):
                vals = [r[k] for r in group if r[k] is not None]
                row[k] = statistics.fmean(vals) if vals else None
            row["real_seconds"] = sum(r["real_seconds"] for r in group)
            rows.append(row)
    return rows


def pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("task", "method", "seeds", "accuracy", "F1", "dev loss", "energy lost", "rel. error", "MB up"):
        table.add_column(col, justify="left" if col in ("task", "method") else "right")
    for r in rows:
        table.add_row(
            r["task"],
            r["method"],
            str(r["seeds"]),
            pm(r["accuracy"], r["accuracy_std"]),
            pm(r["f1"], r["f1_std"]),
            pm(r["loss"], r["loss_std"]),
            "-" if r["energy_lost"] is None else f"{r['energy_lost']:.2e}",
            "-" if r["rel_error"] is None else f"{r['rel_error']:.3f}",
            "-" if r["bytes_up"] is None else f"{r['bytes_up'] / 1e6:.1f}",
        )
    Console(width=160).print(table)


def to_markdown(rows: list[dict[str, Any]]) -> str:
    head = "| task | method | seeds | accuracy | F1 | dev loss | energy lost | rel. error | MB up |"
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['method']} | {r['seeds']} | {pm(r['accuracy'], r['accuracy_std'])} | "
            f"{pm(r['f1'], r['f1_std'])} | {pm(r['loss'], r['loss_std'])} | "
            f"{'-' if r['energy_lost'] is None else format(r['energy_lost'], '.2e')} | "
            f"{'-' if r['rel_error'] is None else format(r['rel_error'], '.3f')} | "
            f"{'-' if r['bytes_up'] is None else format(r['bytes_up'] / 1e6, '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def plot(runs: list[dict[str, Any]], path: Path, title: str) -> None:
    """Dev loss and accuracy per version: a column per task, a line per method (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TASKS if any(r["task"] == t for r in runs)]
    fig, axes = plt.subplots(2, len(tasks), figsize=(6 * len(tasks), 7), squeeze=False, sharex=True)
    for col, task in enumerate(tasks):
        for row, m in enumerate(("loss", "accuracy")):
            ax = axes[row][col]
            for method in METHODS:
                group = [r for r in runs if r["task"] == task and r["method"] == method]
                if not group:
                    continue
                points: dict[int, list[float]] = {}
                for r in group:
                    for v, metrics in r["curve"]:
                        points.setdefault(v, []).append(metrics[m])
                vs = sorted(v for v, xs in points.items() if len(xs) == len(group))
                style = "--" if method in ("centralized", "fedit_r8") else "-"
                ax.plot(vs, [statistics.fmean(points[v]) for v in vs], style, marker="o", label=method)
            ax.set_title(f"{task}: dev {m}")
            ax.grid(alpha=0.3)
        axes[-1][col].set_xlabel("version")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 versions of short jobs of batch 16")
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "bench-hetero", help="kept; finished runs skip")
    ap.add_argument("--out", type=Path, default=RESULTS / "hetero_ranks.json")
    ap.add_argument("--plot", type=Path, default=None, help="PNG path (default: beside --out)")
    args = ap.parse_args(argv)

    runs: list[dict[str, Any]] = []
    total = args.seeds * len(args.tasks) * len(args.methods)
    for seed in range(args.seeds):
        for task in args.tasks:
            for method in args.methods:
                name = f"{task}_{method}{'_quick' if args.quick else ''}_s{seed}"
                print(f"[{len(runs) + 1}/{total}] {name} ...", file=sys.stderr, flush=True)
                r = run_one(task, method, seed, args.quick, args.threads, args.runs_dir / name)
                f = r["final"]
                print(
                    f"    accuracy {f['accuracy']:.4f} F1 {f.get('f1', float('nan')):.4f} loss {f['loss']:.4f}, "
                    f"{r['real_seconds']} s",
                    file=sys.stderr,
                    flush=True,
                )
                runs.append(r)
    rows = summarize(runs)
    title = f"heterogeneous ranks {{2,4,8,16}}{' (quick)' if args.quick else ''}, {args.seeds} seed(s)"
    print_table(rows, title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"title": title, "quick": args.quick, "seeds": args.seeds, "rows": rows, "runs": runs}
    args.out.write_text(json.dumps(payload, indent=1))
    args.out.with_suffix(".md").write_text(to_markdown(rows))
    plot_path = args.plot or args.out.with_suffix(".png")
    plot(runs, plot_path, title)
    print(f"wrote {args.out}, {args.out.with_suffix('.md')} and {plot_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
