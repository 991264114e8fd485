"""The HLoRA claim at the CPU protocol: heterogeneous ranks {2, 4, 8, 16} by speed tier, label skew
Dirichlet(0.5), 10 clients, against zero-padding, HetLoRA, FlexLoRA, FLoRA, FFA-LoRA, homogeneous FedIT at
rank 2 (the weakest client sets the rank) and rank 16 (the upper bound), and centralized at the same samples.

Each cell is `fedlora run configs/protocol/{task}_{method}.yaml --set seed=S`; finished cells are recorded under
docs/results/hlora_{task}[_full]/ and skipped on a rerun, so an interrupted study continues where it stopped.

    python benchmarks/hlora_study.py --seeds 0 1 2 --jobs 2          # run what is missing, then the table
    python benchmarks/hlora_study.py --table                         # the table from the records only
    python benchmarks/hlora_study.py --scale full                    # the configs' GPU budget (reproduce.py)
    python benchmarks/hlora_study.py --scale learning --seeds 0 1 2      # the learning budget, label skew
    python benchmarks/hlora_study.py --scale learning_iid --seeds 0 1 2  # the learning budget, IID labels
    python benchmarks/hlora_study.py --task rte --scale learning --methods centralized   # does RTE learn?

Why `--scale learning`: at the protocol's budget (LoRA on query/value, lr 1e-3, 16 versions x 5 clients x 8
steps of 16) every federated method ends at 0.69-0.70 under this label skew, within a few dev pairs of the
majority class, so the methods cannot differ (docs/results.md §1a). The learning scale uses the settings that
moved the CLLoRA study's near-IID federated run to 0.722 (docs/results.md §4a): LoRA on every attention
projection, lr 2e-3 (head 4e-3), cosine after 6% warm-up, 8 versions x 5 clients x 16 local steps of 32 =
20,480 samples (centralized: 8 versions x 80 steps of 32, the same samples), 7-14 minutes a run on one core
at one thread (measured). Records: docs/results/hlora_mrpc_learning/.

Why `--scale learning_iid`: under label skew Dirichlet(0.5) the learning scale does not learn either. Its
fedit_r2 and hlora runs (seed 0) flip the global model between all-positive and all-negative (dev loss up to
1.16), and so did the probes of docs/results/hlora_mrpc_probes/ (one local epoch weighted by samples; every
client in every version), each ending at 0.68-0.70. A client holding 28 pairs of one label, or 1,241 pairs 98%
positive, pulls the averaged head to its label within one version. `learning_iid` keeps everything else (the
ranks by speed tier, the speeds, the budget) and deals the labels IID, so that what differs between methods
is the rank heterogeneity alone; records: docs/results/hlora_mrpc_learning_iid/, with centralized read from
hlora_mrpc_learning/ (the same run: one client holds everything under any partition).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from common import REPO, save_figure
from study import DOCS_RESULTS, Cell, load_record, mean_std, run_all

METHODS = ("hlora", "flexlora", "zeropad", "hetlora", "flora", "ffa", "fedit_r2", "fedit_r16", "centralized")
#: the full scale: 4x the versions, every client each version, float32 (one large GPU runs the set in minutes)
FULL = ("model.dtype=float32", "stop.versions=64", "schedule.per_round=10", "training.threads=null")
#: a smoke test of the chain: a tiny random BERT on a slice of MRPC
TINY = (
    "model.random_init={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64}",
    "task.train_limit=240",
    "task.dev_limit=64",
    "stop.versions=2",
    "training.local_steps=2",
    "eval.every_versions=1",
)
#: the budget at which federated runs learn past the majority class on this CPU (module docstring)
LEARNING = (
    "lora.target_modules=[query, key, value, attention.output.dense]",
    "training.batch_size=32",
    "training.lr=0.002",
    "training.head_lr=0.004",
    "training.warmup_ratio=0.06",
    "stop.versions=8",
    "eval.every_versions=1",
    "output.checkpoint_every=1",
)
#: dev accuracy of the majority class, the line a run must get past
MAJORITY = {"mrpc": 0.684, "rte": 0.527}
SCALES = {"full": FULL, "tiny": TINY, "learning": LEARNING}
#: local steps per job at the learning scale: a federated version trains 5 jobs of 16, centralized one of 80
LEARNING_STEPS = {"centralized": 80}


def method_scale(method: str, scale: str) -> str:
    """The scale a method's run belongs to: centralized training (one client holding everything) is the same
    run whatever the partition, so under `learning_iid` it is `learning`'s run, configured and recorded once."""
    return "learning" if scale == "learning_iid" and method == "centralized" else scale


def scale_sets(method: str, scale: str) -> tuple[str, ...]:
    scale = method_scale(method, scale)
    if scale not in ("learning", "learning_iid"):
        return SCALES.get(scale, ())
    iid = ("partition={name: iid}",) if scale == "learning_iid" else ()
    return (*LEARNING, f"training.local_steps={LEARNING_STEPS.get(method, 16)}", *iid)


def record_study(task: str, scale: str, method: str) -> str:
    """Where a method's records live (`method_scale`)."""
    return study_name(task, method_scale(method, scale))


def study_name(task: str, scale: str) -> str:
    return f"hlora_{task}" + ("" if scale == "cpu" else f"_{scale}")


def cells(task: str, seeds: Sequence[int], scale: str, threads: int | None, methods=METHODS) -> list[Cell]:
    threads_set = (f"training.threads={threads}",) if threads and scale != "full" else ()
    return [
        Cell(
            f"{m}/seed={s}",
            f"configs/protocol/{task}_{m}.yaml",
            (f"seed={s}", "output.progress=false", *scale_sets(m, scale), *threads_set),
            tags={"method": m, "seed": str(s), "scale": scale},
        )
        for m in methods
        for s in seeds
    ]


# ----- the table ------------------------------------------------------------------------------------------


def first_reaching(history: list[dict], metric: str, target: float) -> dict | None:
    return next((p for p in history if p["metrics"].get(metric, -1) >= target), None)


def table(where: Callable[[str], str], methods: Sequence[str], seeds: Sequence[int], target: float) -> tuple[str, dict]:
    """The study's table; `where(method)` names the study that holds the method's records."""
    recs = {(m, s): load_record(where(m), Cell(f"{m}/seed={s}", "")) for m in methods for s in seeds}
    lines = [
        f"| method | seeds | final acc | final F1 | final loss | best acc | best F1 | versions to {target} "
        f"| virtual s to {target} | MB up | MB down |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    data: dict = {}
    for m in methods:
        got = [(s, recs[(m, s)]) for s in seeds if recs[(m, s)] is not None]
        if not got:
            continue
        fin = [r["final"]["metrics"] for _, r in got]
        best_acc = [max(p["metrics"]["accuracy"] for p in r["history"]) for _, r in got]
        # RTE reports accuracy only: its F1 columns stay empty rather than nan
        best_f1 = [max(p["metrics"]["f1"] for p in r["history"]) for _, r in got if "f1" in r["final"]["metrics"]]
        reach = [first_reaching(r["history"], "accuracy", target) for _, r in got]
        versions = [p["version"] for p in reach if p]
        seconds = [p["virtual_s"] for p in reach if p]
        hit = f"{len(versions)}/{len(got)}"
        up = statistics.mean(r["totals"]["bytes_up"] for _, r in got) / 1e6
        down = statistics.mean(r["totals"]["bytes_down"] for _, r in got) / 1e6
        v_txt = f"{statistics.mean(versions):.1f} ({hit})" if versions else f"- (0/{len(got)})"
        s_txt = f"{statistics.mean(seconds):,.0f} ({hit})" if seconds else f"- (0/{len(got)})"
        lines.append(
            f"| {m} | {','.join(str(s) for s, _ in got)} | {mean_std([f['accuracy'] for f in fin])} | "
            f"{mean_std([f['f1'] for f in fin if 'f1' in f])} | {mean_std([f['loss'] for f in fin])} | "
            f"{mean_std(best_acc)} | {mean_std(best_f1)} | "
            f"{v_txt} | {s_txt} | {up:.1f} | {down:.1f} |"
        )
        data[m] = {s: r for s, r in got}
    return "\n".join(lines), data


def paired(data: dict, a: str, b: str) -> str:
    if a not in data or b not in data:
        return f"{a} - {b}: not both recorded"
    common = sorted(set(data[a]) & set(data[b]))
    if not common:
        return f"{a} - {b}: no common seeds"
    parts = []
    for key in ("accuracy", "f1", "loss"):  # dev loss: finer than accuracy's steps of one dev pair
        if any(key not in data[x][s]["final"]["metrics"] for x in (a, b) for s in common):
            continue
        d = [data[a][s]["final"]["metrics"][key] - data[b][s]["final"]["metrics"][key] for s in common]
        pos, neg = sum(x > 0 for x in d), sum(x < 0 for x in d)
        per = ", ".join(f"s{s}: {x:+.4f}" for s, x in zip(common, d, strict=True))
        parts.append(f"{key} {statistics.mean(d):+.4f} ({per}; {pos}+ / {neg}- / {len(d) - pos - neg}=)")
    return f"{a} - {b}, final, per seed: " + "; ".join(parts)


def figure(data: dict, path: Path, task: str = "mrpc") -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for m, by_seed in data.items():
        hist = [r["history"] for r in by_seed.values()]
        n = min(len(h) for h in hist)
        xs = [hist[0][i]["version"] for i in range(n)]
        ys = [statistics.mean(h[i]["metrics"]["accuracy"] for h in hist) for i in range(n)]
        ax.plot(xs, ys, label=m, lw=2.2 if m == "hlora" else 1.2)
    ax.axhline(MAJORITY[task], color="grey", ls=":", lw=1, label="majority class")
    ax.set_xlabel("version")
    ax.set_ylabel(f"{task.upper()} dev accuracy (mean over seeds)")
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mrpc")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--scale", choices=("cpu", "learning", "learning_iid", "full", "tiny"), default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="cells in parallel (each with training.threads=1)")
    ap.add_argument("--target", type=float, default=0.75, help="dev accuracy for versions/seconds to target")
    ap.add_argument("--table", action="store_true", help="only print the table from the records")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    args = ap.parse_args()
    study = study_name(args.task, args.scale)
    threads = 1 if args.jobs > 1 else None

    def where(method: str) -> str:
        return record_study(args.task, args.scale, method)

    if not args.table:
        todo = cells(args.task, args.seeds, args.scale, threads, args.methods)
        for name in dict.fromkeys(where(c.tags["method"]) for c in todo):
            run_all(name, [c for c in todo if where(c.tags["method"]) == name], args.runs_dir, args.jobs)
    text, data = table(where, METHODS, args.seeds, args.target)
    pairs = [paired(data, "hlora", "zeropad"), paired(data, "hlora", "fedit_r2"), paired(data, "hlora", "fedit_r16")]
    out = DOCS_RESULTS / study
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text + "\n\n" + "\n".join(f"- {p}" for p in pairs) + "\n")
    if data:
        figure(data, out / "accuracy_vs_version.png", args.task)
    print(text)
    print("\n".join(pairs))
    print(json.dumps({"study": study, "records": sum(len(v) for v in data.values())}))


if __name__ == "__main__":
    main()
