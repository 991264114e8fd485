"""The FedFa claim at the CPU protocol: fully asynchronous training against FedAvg, FedBuff and FedAsync on one
simulated clock, and heterogeneous ranks under full asynchrony.

FedFa (Xu et al., IJCAI 2024) claims up to 6x faster than synchronous and 4x faster than semi-asynchronous
training to the same accuracy, IID and non-IID. The protocol (configs/protocol/mrpc_async.yaml, budget in its
header): 20 clients with Pareto(1) speeds, 5 training at once under every schedule, clients drawn uniformly
among the free ones, every run the same 6,400 samples (100 jobs). Three parts, each cell recorded under
docs/results/fedfa_mrpc/<part>/<partition>/<variant>/seed=<s>/ and skipped on a rerun:

- main:   fedavg, fedbuff, fedasync, fedfa (models), fedfa_deltas; IID and label Dirichlet(0.5);
- sweep:  why FedFa drifts under label skew: window K 10 and 20, staleness weighting, deltas with server_lr 1/K;
- hetero: hlora + fedfa with ranks {2, 4, 8, 16} by speed tier, zeropad + fedfa, fedfa at rank 2 and 16 (IID).

    python benchmarks/fedfa_study.py --seeds 0 1 2 --jobs 2            # run what is missing, then the tables
    python benchmarks/fedfa_study.py --parts main --seeds 0            # one part, one seed
    python benchmarks/fedfa_study.py --table                           # the tables from the records only
    python benchmarks/fedfa_study.py --scale tiny --jobs 1             # a smoke test on a tiny random model
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from common import REPO, save_figure
from study import DOCS_RESULTS, Cell, load_record, run_all

CONFIG = "configs/protocol/mrpc_async.yaml"
PARTITIONS = {"iid": ("partition={name: iid}",), "label": ("partition={name: label, alpha: 0.5}",)}
#: FedAvg and FedBuff make a version per 5 results, FedAsync and FedFa one per result: evaluating every 2
#: and every 10 versions gives each schedule about 10 evaluations spread over its run
ROUNDED = ("eval.every_versions=2", "output.checkpoint_every=2")
SCHEDULES: dict[str, tuple[str, ...]] = {
    "fedavg": ("schedule={name: fedavg, per_round: 5}", *ROUNDED),
    "fedbuff": ("schedule={name: fedbuff, concurrency: 5, buffer_size: 5}", *ROUNDED),
    "fedasync": ("schedule={name: fedasync, concurrency: 5}",),
    "fedfa": (),
    "fedfa_deltas": ("schedule.mode=deltas",),
}
#: deltas mode applies each result K times at weight server_lr/K while it sits in the window, so each delta
#: counts server_lr in total and 5 concurrent clients step 5x as far as FedAvg's mean: server_lr = 1/K = 0.2
#: makes K arrivals step by the mean delta, like FedBuff with server_lr 1
SWEEP: dict[str, tuple[str, ...]] = {
    "fedfa_k10": ("schedule.window=10",),
    "fedfa_k20": ("schedule.window=20",),
    "fedfa_stale": ("schedule.staleness={name: polynomial, a: 0.5}",),
    "fedfa_deltas_lr0.2": ("schedule.mode=deltas", "schedule.server_lr=0.2"),
    "fedfa_deltas_lr0.2_stale": (
        "schedule.mode=deltas",
        "schedule.server_lr=0.2",
        "schedule.staleness={name: polynomial, a: 0.5}",
    ),
}
HETERO_RANKS = ("lora.rank=16", "clients.ranks={name: speed_tier, tiers: [2, 4, 8, 16]}")
HETERO: dict[str, tuple[str, ...]] = {
    "fedfa_hlora": ("aggregator={name: hlora}", *HETERO_RANKS),
    "fedfa_zeropad": ("aggregator={name: zeropad}", *HETERO_RANKS),
    "fedfa_r2": ("lora.rank=2",),
    "fedfa_r16": ("lora.rank=16",),
}
PARTS = {
    "main": (("iid", "label"), SCHEDULES),
    "hetero": (("iid",), HETERO),
    "sweep": (("label",), SWEEP),
}
TINY = (
    "model.random_init={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64}",
    "task.train_limit=320",
    "task.dev_limit=64",
    "stop.samples=640",
)
STUDY = {"cpu": "fedfa_mrpc", "tiny": "fedfa_mrpc_tiny"}


def cells(parts: Sequence[str], seeds: Sequence[int], scale: str) -> list[Cell]:
    """Seed-major, so that every variant of a seed is recorded before the next seed starts."""
    extra = TINY if scale == "tiny" else ()
    out = []
    for s in seeds:
        for part in parts:
            partitions, variants = PARTS[part]
            for p in partitions:
                for v, sets in variants.items():
                    out.append(
                        Cell(
                            f"{part}/{p}/{v}/seed={s}",
                            CONFIG,
                            (f"seed={s}", *PARTITIONS[p], *sets, "output.progress=false", *extra),
                            tags={"part": part, "partition": p, "variant": v, "seed": str(s), "scale": scale},
                        )
                    )
    return out


# ----- the tables -----------------------------------------------------------------------------------------


def curve(rec: dict, metric: str = "accuracy") -> list[tuple[float, float]]:
    return [(p["virtual_s"], p["metrics"][metric]) for p in rec["history"]]


def time_to(rec: dict, target: float, metric: str = "accuracy") -> float | None:
    """Virtual seconds of the first evaluation at the target: accuracy at or above it, loss at or below it."""
    if metric == "loss":
        return next((t for t, v in curve(rec, "loss") if v <= target + 1e-12), None)
    return next((t for t, v in curve(rec) if v >= target - 1e-12), None)


def worst_late(rec: dict) -> float:
    """The lowest accuracy in the second half of the run's evaluations: how far the model swings late."""
    accs = [a for _, a in curve(rec)]
    return min(accs[len(accs) // 2 :])


def speed_spread(seed: int) -> dict[str, float]:
    """The world's client speeds for a seed, as the run drew them."""
    from fedlora.clients.speeds import draw_speeds
    from fedlora.config import load_config

    cfg = load_config(REPO / CONFIG, [f"seed={seed}"])
    sp = np.sort(draw_speeds(cfg.clients.speeds, cfg.clients.count, seed))
    return {
        "min": float(sp[0]),
        "median": float(np.median(sp)),
        "max": float(sp[-1]),
        "max/min": float(sp[-1] / sp[0]),
        "p90/p10": float(np.quantile(sp, 0.9) / np.quantile(sp, 0.1)),
    }


def mean_std(xs: list[float], spec: str = ".4f") -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return format(xs[0], spec)
    return f"{format(statistics.mean(xs), spec)} ± {format(statistics.stdev(xs), spec)}"


def records(study: str, part: str, partition: str, variants: Sequence[str], seeds: Sequence[int]) -> dict:
    out: dict = {}
    for v in variants:
        for s in seeds:
            rec = load_record(study, Cell(f"{part}/{partition}/{v}/seed={s}", ""))
            if rec is not None:
                out.setdefault(v, {})[s] = rec
    return out


#: the variants whose common dev-loss level sets a part's loss target
TIMED = {"main": ("fedavg", "fedbuff", "fedasync", "fedfa"), "hetero": tuple(HETERO)}


def common_loss(data: dict, seed: int, timed: Sequence[str]) -> float | None:
    """The lowest dev loss every timed variant reached with this seed: the level all of them can be timed at."""
    lows = [min(v for _, v in curve(data[x][seed], "loss")) for x in timed if seed in data.get(x, {})]
    return max(lows) if len(lows) == len(timed) else None


def table(data: dict, acc_target: float, loss_targets: dict[int, float | None]) -> tuple[str, dict]:
    """One row per variant: final and best metrics, the two times to target, the world's statistics."""
    lines = [
        f"| variant | seeds | final acc | final F1 | best acc | worst acc, 2nd half | virtual s to acc {acc_target} "
        "| virtual s to common loss "
        "| virtual s (run) | versions | idle share | staleness mean / max | clients with a result (min-max) | MB up |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    times: dict = {"accuracy": {}, "loss": {}}
    for v, by in data.items():
        got = sorted(by)
        recs = [by[s] for s in got]
        fin = [r["final"]["metrics"] for r in recs]
        cols = []
        for metric, tgt in (("accuracy", dict.fromkeys(got, acc_target)), ("loss", loss_targets)):
            tt = {s: time_to(by[s], tgt[s], metric) for s in got if tgt.get(s) is not None}
            times[metric][v] = tt
            hit = [t for t in tt.values() if t is not None]
            cols.append(f"{mean_std(hit, '.0f')} ({len(hit)}/{len(tt)})")
        part = [r.get("participation") or {} for r in recs]
        who = ", ".join(f"{p.get('distinct')} ({p.get('min_arrived')}-{p.get('max_arrived')})" for p in part)
        tot = [r["totals"] for r in recs]
        lines.append(
            f"| {v} | {','.join(map(str, got))} | {mean_std([f['accuracy'] for f in fin])} | "
            f"{mean_std([f['f1'] for f in fin])} | {mean_std([max(a for _, a in curve(r)) for r in recs])} | "
            f"{mean_std([worst_late(r) for r in recs])} | {cols[0]} | {cols[1]} | "
            f"{mean_std([t['virtual_seconds'] for t in tot], '.0f')} | "
            f"{statistics.mean(t['versions'] for t in tot):.0f} | "
            f"{statistics.mean(t['idle_fraction'] for t in tot):.2f} | "
            f"{statistics.mean(t['staleness_mean'] for t in tot):.1f} / {max(t['staleness_max'] for t in tot)} | "
            f"{who} | {statistics.mean(t['bytes_up'] for t in tot) / 1e6:.1f} |"
        )
    return "\n".join(lines), times


def ratios(times: dict, ref: str, others: Sequence[str], label: str) -> list[str]:
    """Per-seed ratios of the time to target, other / ref (the paper's 'x times faster')."""
    out = []
    for o in others:
        if o not in times or ref not in times:
            continue
        common = sorted(set(times[o]) & set(times[ref]))
        per = {s: times[o][s] / times[ref][s] for s in common if times[o][s] is not None and times[ref][s]}
        missed = [s for s in common if s not in per]
        txt = ", ".join(f"s{s}: {x:.2f}x" for s, x in per.items())
        txt += "".join(f", s{s}: not both reached" for s in missed)
        mean = f"{statistics.mean(per.values()):.2f}x" if per else "-"
        out.append(f"{o}/{ref}, time to {label}: {mean} ({txt.lstrip(', ')})")
    return out


def paired(data: dict, a: str, b: str) -> str | None:
    if a not in data or b not in data:
        return None
    common = sorted(set(data[a]) & set(data[b]))
    if not common:
        return None
    d = [data[a][s]["final"]["metrics"]["accuracy"] - data[b][s]["final"]["metrics"]["accuracy"] for s in common]
    per = ", ".join(f"s{s}: {x:+.4f}" for s, x in zip(common, d, strict=True))
    return f"{a} - {b}, final accuracy: {statistics.mean(d):+.4f} ({per})"


def figure(panels: dict[str, dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, data) in zip(axes[0], panels.items(), strict=True):
        for i, (v, by) in enumerate(data.items()):
            for j, s in enumerate(sorted(by)):
                xs, ys = zip(*curve(by[s]), strict=True)
                ax.plot(xs, ys, color=f"C{i}", lw=1.0, alpha=0.85, label=v if j == 0 else None)
        ax.axhline(0.684, color="grey", ls=":", lw=1, label="majority class")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("virtual seconds")
        ax.set_ylabel("MRPC dev accuracy (each seed a line)")
        ax.legend(fontsize=7)
    save_figure(fig, path)


COMPARE = {
    "main": ("fedfa", ("fedavg", "fedbuff", "fedasync", "fedfa_deltas")),
    "hetero": ("fedfa_hlora", ("fedfa_zeropad", "fedfa_r2", "fedfa_r16")),
}


def report(study: str, seeds: Sequence[int], acc_target: float) -> str:
    spreads = {s: speed_spread(s) for s in seeds}
    out = [
        "Client speeds (Pareto(1), 20 clients) per seed: "
        + "; ".join(
            f"s{s}: fastest/slowest {sp['max/min']:.1f}x, p90/p10 {sp['p90/p10']:.1f}x, median {sp['median']:.2f}"
            for s, sp in spreads.items()
        )
    ]
    panels: dict[str, dict] = {}
    summary: dict = {"speeds": spreads, "accuracy_target": acc_target}
    main_loss: dict[str, dict] = {}
    for part, (partitions, variants) in PARTS.items():
        for p in partitions:
            data = records(study, part, p, list(variants), seeds)
            if not data:
                continue
            if part in TIMED:
                loss_targets = {s: common_loss(data, s, TIMED[part]) for s in seeds}
            else:  # the sweep is timed at the main table's level for its partition
                loss_targets = main_loss.get(p, dict.fromkeys(seeds))
                data = {**records(study, "main", p, ["fedavg", "fedfa"], seeds), **data}
            if part == "main":
                main_loss[p] = loss_targets
            text, times = table(data, acc_target, loss_targets)
            lt = ", ".join(f"s{s}: {t:.4f}" for s, t in loss_targets.items() if t is not None)
            out += ["", f"### {part}, {p} (common dev-loss level per seed: {lt or '-'})", "", text, ""]
            ref, others = COMPARE.get(part, ("fedfa", (*variants, "fedavg")))  # the sweep: against FedFa K=5
            for metric, label in (("accuracy", f"accuracy {acc_target}"), ("loss", "the common loss")):
                out += [f"- {r}" for r in ratios(times[metric], ref, others, label)]
            out += [f"- {x}" for x in (paired(data, ref, o) for o in others) if x]
            panels[f"{part}, {p}"] = data
            summary[f"{part}/{p}"] = {"loss_targets": loss_targets, "time_to": times}
    (DOCS_RESULTS / study).mkdir(parents=True, exist_ok=True)
    if panels:
        figure(panels, DOCS_RESULTS / study / "accuracy_vs_virtual_s.png")
    (DOCS_RESULTS / study / "tables.json").write_text(json.dumps(summary, indent=1, default=str))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    ap.add_argument("--scale", choices=tuple(STUDY), default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="cells in parallel (the config runs one thread each)")
    ap.add_argument("--target", type=float, default=0.70, help="dev accuracy to time (besides the common loss)")
    ap.add_argument("--table", action="store_true", help="only print the tables from the records")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    args = ap.parse_args()
    study = STUDY[args.scale]
    if not args.table:
        run_all(study, cells(args.parts, args.seeds, args.scale), args.runs_dir, args.jobs)
    text = report(study, args.seeds, args.target)
    (DOCS_RESULTS / study / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
