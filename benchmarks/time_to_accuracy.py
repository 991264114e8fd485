"""Time to accuracy: synchronous FedAvg, semi-asynchronous FedBuff, FedAsync and fully asynchronous FedFa.

The claim under test (FedFa, Xu et al. 2024): removing all waiting reaches the same accuracy up to 6x faster
than synchronous and 4x faster than semi-asynchronous training, IID and non-IID. Every run of a setting
has the same virtual-time budget and is evaluated on the same clock, so the curves share one time axis.

Runs configs/async/mrpc_{iid,label}_{fedavg,fedbuff,fedasync,fedfa}[_hlora].yaml, one after another, and
reports per partition and schedule: virtual seconds to the target accuracy, final accuracy, accuracy at the
time budgets, idle share of client time, mean staleness; with the ratios fedavg/fedfa and fedbuff/fedfa of
the time to target. Writes JSON (benchmarks/results/time_to_accuracy.json) and a plot of accuracy versus
virtual time per schedule (benchmarks/results/time_to_accuracy.png).

    python benchmarks/time_to_accuracy.py                      # the full MiniLM configs (hours on a CPU)
    python benchmarks/time_to_accuracy.py --quick              # 6 clients, short pairs, small budget: minutes
    python benchmarks/time_to_accuracy.py --cpu --seeds 3      # all of MRPC, 5 clients at a time: ~1.5 h
    python benchmarks/time_to_accuracy.py --aggregator hlora --seeds 3 --target 0.75

`--target auto` (the default with --quick) uses, per partition and seed, the best value that every schedule
reached: the level all of them can be compared at. `--metric loss` times the dev loss instead of accuracy
(the default with --quick, whose few steps move the loss but not yet the accuracy above the majority class).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, RESULTS, data_dir, save_figure

SCHEDULES = ("fedavg", "fedbuff", "fedasync", "fedfa")
METRICS = ("accuracy", "loss")  # loss: lower is better
PARTITIONS = ("iid", "label")

#: --quick: MiniLM on short pairs (48 tokens) of an 800-pair slice of MRPC, 6 clients, jobs of 2 steps of 8
#: pairs, a 36 virtual s budget: about a minute of one CPU core per asynchronous run. So little training
#: does not lift accuracy above the majority class, so --quick measures the time to a dev loss instead.
QUICK = [
    "task.max_length=48",
    "task.train_limit=800",
    "task.dev_limit=96",
    "clients.count=6",
    "training={local_steps: 2, batch_size: 8, lr: 0.004, head_lr: 0.008, step_seconds: 1.0, threads: 1}",
    "stop.virtual_seconds=36",
    "eval.every_seconds=3",
    "eval.time_budgets=[9, 18, 36]",
    "eval.batch_size=96",
    "output.checkpoint_every=1000",
]
QUICK_HLORA: list[str] = []

#: --cpu: the configs' world (all of MRPC, 20 clients, Pareto(1) speeds) at a budget one CPU core runs in about
#: three minutes per schedule: 5 clients train at once under every schedule (FedAvg samples 5 per round, the
#: asynchronous ones keep 5 busy), jobs of 2 steps of 16 pairs, a 90 virtual s budget, evaluations every 10
#: virtual s on 200 dev pairs. Like --quick, too little training to lift accuracy above the majority class, so
#: it times the dev loss.
CPU = [
    "task.dev_limit=200",
    "training={local_steps: 2, batch_size: 16, lr: 0.002, head_lr: 0.004, step_seconds: 1.0, threads: 1}",
    "stop.virtual_seconds=90",
    "eval.every_seconds=10",
    "eval.time_budgets=[30, 60, 90]",
    "output.checkpoint_every=1000",
]
CPU_SCHEDULE = {"fedavg": ["schedule.per_round=5"]}  # the others: schedule.concurrency=5


def config_path(configs: Path, partition: str, schedule: str, aggregator: str) -> Path:
    suffix = "" if aggregator == "fedit" else f"_{aggregator}"
    return configs / f"mrpc_{partition}_{schedule}{suffix}.yaml"


def run_one(path: Path, seed: int, budget: str, aggregator: str, out: Path, schedule: str) -> dict[str, Any]:
    """Run one config (or read the summary a previous invocation left in `out`)."""
    from fedlora.config import load_config
    from fedlora.experiment import run_experiment

    overrides = [f"seed={seed}", f"task.data_dir={data_dir()}", "output.progress=false", "stop.stop_at_target=false"]
    if budget == "quick":
        overrides += QUICK + (QUICK_HLORA if aggregator == "hlora" else [])
    elif budget == "cpu":
        overrides += CPU + CPU_SCHEDULE.get(schedule, ["schedule.concurrency=5"])
    t0 = time.perf_counter()
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
    else:
        cfg = load_config(path, overrides)
        summary = run_experiment(cfg, out=out, resume=(out / "checkpoints").exists())
    totals = summary["totals"]
    return {
        "config": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "seed": seed,
        "curves": {m: [(p["virtual_s"], p["metrics"][m]) for p in summary["history"]] for m in METRICS},
        "final": summary["final"]["metrics"],
        "at_time": {k: (v["metrics"] if v else None) for k, v in summary["at_time"].items()},
        "versions": totals["versions"],
        "jobs_arrived": totals["jobs_arrived"],
        "samples_trained": totals["samples_trained"],
        "idle_fraction": totals["idle_fraction"],
        "staleness_mean": totals["staleness_mean"],
        "staleness_max": totals["staleness_max"],
        "dropped": totals["dropped"],
        "virtual_seconds": totals["virtual_seconds"],
        "real_seconds": round(time.perf_counter() - t0, 1),
    }


def better(metric: str, value: float, target: float) -> bool:
    return value <= target + 1e-12 if metric == "loss" else value >= target - 1e-12


def time_to(curve: list[tuple[float, float]], target: float, metric: str) -> float | None:
    """Virtual seconds of the first evaluation that reaches target (None: never reached)."""
    return next((t for t, v in curve if better(metric, v, target)), None)


def auto_target(runs: list[dict[str, Any]], metric: str) -> float:
    """The best value of `metric` that every one of these runs reached."""
    if metric == "loss":
        return max(min(v for _, v in r["curves"][metric]) for r in runs)
    return min(max(v for _, v in r["curves"][metric]) for r in runs)


def mean_or_none(xs: list[float | None]) -> float | None:
    return statistics.fmean(xs) if xs and all(x is not None for x in xs) else None


def summarize(runs: list[dict[str, Any]], target: str | float, metric: str) -> dict[str, Any]:
    """Per (partition, schedule): mean over seeds; targets per (partition, seed) when target is 'auto'."""
    targets: dict[tuple[str, int], float] = {}
    for p in PARTITIONS:
        for seed in sorted({r["seed"] for r in runs}):
            group = [r for r in runs if r["partition"] == p and r["seed"] == seed]
            if group:
                targets[(p, seed)] = auto_target(group, metric) if target == "auto" else float(target)
    for r in runs:
        r["target"] = targets[(r["partition"], r["seed"])]
        r["time_to_target"] = time_to(r["curves"][metric], r["target"], metric)
    rows = []
    for p in PARTITIONS:
        for s in SCHEDULES:
            group = [r for r in runs if r["partition"] == p and r["schedule"] == s]
            if not group:
                continue
            ttt = [r["time_to_target"] for r in group]
            finals = [r["final"]["accuracy"] for r in group]
            budgets = sorted({k for r in group for k in r["at_time"]}, key=float)
            rows.append(
                {
                    "partition": p,
                    "schedule": s,
                    "seeds": len(group),
                    "target": statistics.fmean(r["target"] for r in group),
                    "time_to_target": mean_or_none(ttt),
                    "reached": sum(t is not None for t in ttt),
                    "final": statistics.fmean(finals),
                    "final_std": statistics.pstdev(finals) if len(finals) > 1 else 0.0,
                    "at_time": {
                        b: mean_or_none([(r["at_time"].get(b) or {}).get("accuracy") for r in group]) for b in budgets
                    },
                    "final_loss": statistics.fmean(r["final"]["loss"] for r in group),
                    "idle_fraction": statistics.fmean(r["idle_fraction"] for r in group),
                    "staleness_mean": statistics.fmean(r["staleness_mean"] for r in group),
                    "versions": statistics.fmean(r["versions"] for r in group),
                    "samples_trained": statistics.fmean(r["samples_trained"] for r in group),
                    "real_seconds": sum(r["real_seconds"] for r in group),
                }
            )
    ratios = {}
    for p in PARTITIONS:
        by = {row["schedule"]: row["time_to_target"] for row in rows if row["partition"] == p}
        fa = by.get("fedfa")
        ratios[p] = {
            f"{s}/fedfa": (by[s] / fa if by.get(s) is not None and fa else None) for s in ("fedavg", "fedbuff")
        }
    return {"rows": rows, "ratios": ratios}


def fmt(x: float | None, spec: str = ".0f", missing: str = "not reached") -> str:
    return missing if x is None else format(x, spec)


def print_table(result: dict[str, Any], title: str, metric: str) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = result["rows"]
    budgets = sorted({b for r in rows for b in r["at_time"]}, key=float)
    table = Table(title=title)
    cols = ("partition", "schedule", f"target {metric}", "virtual s to target", "final acc", "final loss")
    for col in cols:
        table.add_column(col, justify="left" if col in ("partition", "schedule") else "right")
    for b in budgets:
        table.add_column(f"acc @ {b} s", justify="right")
    for col in ("idle share", "staleness", "versions", "x vs fedfa"):
        table.add_column(col, justify="right")
    for r in rows:
        ratio = result["ratios"][r["partition"]].get(f"{r['schedule']}/fedfa")
        reached = fmt(r["time_to_target"]) + (f" ({r['reached']}/{r['seeds']})" if r["seeds"] > 1 else "")
        final = f"{r['final']:.4f}" + (f" ± {r['final_std']:.4f}" if r["seeds"] > 1 else "")
        table.add_row(
            r["partition"],
            r["schedule"],
            f"{r['target']:.4f}",
            reached,
            final,
            f"{r['final_loss']:.4f}",
            *[fmt(r["at_time"][b], ".4f", "-") for b in budgets],
            f"{r['idle_fraction']:.3f}",
            f"{r['staleness_mean']:.2f}",
            f"{r['versions']:.0f}",
            (f"{ratio:.2f}x" if ratio is not None else "-") if r["schedule"] in ("fedavg", "fedbuff") else "",
        )
    Console(width=200).print(table)


def plot(runs: list[dict[str, Any]], path: Path, title: str, metric: str) -> None:
    """Accuracy and dev loss versus virtual time: a column per partition, a line per schedule (seed mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in PARTITIONS if any(r["partition"] == p for r in runs)]
    fig, axes = plt.subplots(2, len(parts), figsize=(6 * len(parts), 7), squeeze=False, sharex=True, sharey="row")
    for col, p in enumerate(parts):
        for row, m in enumerate(METRICS):
            ax = axes[row][col]
            for s in SCHEDULES:
                group = [r for r in runs if r["partition"] == p and r["schedule"] == s]
                if not group:
                    continue
                # every run evaluates at the same ticks; average the seeds tick by tick
                points: dict[float, list[float]] = {}
                for r in group:
                    for t, v in r["curves"][m]:
                        points.setdefault(t, []).append(v)
                ts = sorted(t for t, vs in points.items() if len(vs) == len(group))
                ax.plot(ts, [statistics.fmean(points[t]) for t in ts], drawstyle="steps-post", label=s)
            targets = {r["target"] for r in runs if r["partition"] == p}
            if m == metric and len(targets) == 1:
                ax.axhline(targets.pop(), color="grey", linestyle=":", linewidth=1, label="target")
            ax.set_title(f"{p}: dev {m}")
            ax.grid(alpha=0.3)
        axes[-1][col].set_xlabel("virtual seconds")
    axes[0][0].set_ylabel("dev accuracy")
    axes[1][0].set_ylabel("dev loss")
    axes[0][-1].legend()
    fig.suptitle(title)
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short pairs, 6 clients, 36 virtual s: minutes")
    ap.add_argument("--cpu", action="store_true", help="all of MRPC, 20 clients, 5 at a time, 90 virtual s")
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per config")
    ap.add_argument("--metric", default=None, choices=METRICS, help="what to reach (default: loss with --quick)")
    ap.add_argument("--target", default=None, help="value to reach, or 'auto' (default: the configs' or auto)")
    ap.add_argument("--aggregator", default="fedit", choices=["fedit", "hlora"], help="which config family")
    ap.add_argument("--configs", type=Path, default=REPO / "configs" / "async")
    ap.add_argument("--partitions", nargs="+", default=list(PARTITIONS), choices=PARTITIONS)
    ap.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=SCHEDULES)
    ap.add_argument("--out", type=Path, default=RESULTS / "time_to_accuracy.json")
    ap.add_argument("--plot", type=Path, default=None, help="PNG path (default: beside --out)")
    ap.add_argument("--runs-dir", type=Path, default=None, help="keep run directories here (default: temporary)")
    args = ap.parse_args(argv)

    from fedlora.config import load_config

    budget = "quick" if args.quick else "cpu" if args.cpu else "full"
    metric = args.metric or ("loss" if budget != "full" else "accuracy")
    if args.target is not None:
        target: str | float = args.target if args.target == "auto" else float(args.target)
    elif budget != "full" or metric != "accuracy":
        target = "auto"
    else:  # the configs' own stop.target_accuracy (they share one)
        first = config_path(args.configs, args.partitions[0], args.schedules[0], args.aggregator)
        target = load_config(first).stop.target_accuracy or "auto"
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fedlora-tta-") as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        for seed in range(args.seeds):
            for p in args.partitions:
                for s in args.schedules:
                    path = config_path(args.configs, p, s, args.aggregator)
                    name = f"{path.stem}{'' if budget == 'full' else '_' + budget}_s{seed}"
                    print(f"[{len(runs) + 1}] {name} ...", file=sys.stderr, flush=True)
                    r = run_one(path, seed, budget, args.aggregator, runs_dir / name, s)
                    r.update(partition=p, schedule=s)
                    print(
                        f"    final accuracy {r['final']['accuracy']:.4f} loss {r['final']['loss']:.4f}, "
                        f"{r['versions']} versions, {r['real_seconds']} s real",
                        file=sys.stderr,
                        flush=True,
                    )
                    runs.append(r)
    result = summarize(runs, target, metric)
    title = (
        f"time to accuracy, MRPC, {args.aggregator}{'' if budget == 'full' else f' ({budget})'}, "
        f"{args.seeds} seed(s), target {metric} {'auto' if target == 'auto' else target}"
    )
    print_table(result, title, metric)
    for p, rs in result["ratios"].items():
        text = ", ".join(f"{k} = {fmt(v, '.2f', 'n/a')}" for k, v in rs.items())
        print(f"{p}: time-to-target ratios {text}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "title": title,
        "quick": args.quick,
        "budget": budget,
        "aggregator": args.aggregator,
        "seeds": args.seeds,
        "metric": metric,
        "target": target,
        "rows": result["rows"],
        "ratios": result["ratios"],
        "runs": runs,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    png = args.plot or args.out.with_suffix(".png")
    plot(runs, png, title, metric)
    print(f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
