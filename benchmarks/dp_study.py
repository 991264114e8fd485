"""Client-level DP at the CPU protocol (GLUE MRPC, 10 clients, label skew, ranks {2, 4, 8, 16} by speed tier):
dev accuracy at epsilon in {1, 4, 8, inf} (delta 1e-5) for FedIT (every client at rank 16), FFA-LoRA and HLoRA
under FedAvg, and HLoRA under FedAvg against FedFa. Does freezing A (FFA-LoRA) help under DP?

Each cell is `fedlora run configs/protocol/mrpc_{method}.yaml --set privacy=... --set seed=S` with central noise
(privacy.where: server) solved for the target epsilon over the run's stop.versions (privacy.epsilon; the budget
stop.epsilon is the same number). epsilon = inf keeps the clipping and adds no noise: it separates the cost
of clipping from the cost of noise and records the update norms (the aggregation events' dp_norm_max).
Accounting: FedAvg samples 5 of 10 clients uniformly, so every version is a subsampled Gaussian at q = 0.5;
FedFa gets no amplification and charges a client once per window its update is in (docs/privacy.md).
FedFa runs the same number of jobs as FedAvg (80: 16 versions x 5 clients), so 76 versions with a window of 5.

Finished cells are recorded under docs/results/dp_mrpc[_tiny]/ and skipped on a rerun.

    python benchmarks/dp_study.py --seeds 0 1 2 --jobs 2     # run what is missing, then the table and figure
    python benchmarks/dp_study.py --table                    # the table from the records only
    python benchmarks/dp_study.py --scale tiny --seeds 0     # a smoke test of the chain (tiny random BERT)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from common import REPO, save_figure
from study import DOCS_RESULTS, Cell, load_record, mean_std, run_all

EPSILONS = ("1", "4", "8", "inf")
DELTA = 1e-5
CLIP = 1.0
#: (cell prefix, protocol config, extra overrides)
METHODS = {
    "fedit": ("mrpc_fedit_r16", ()),
    "ffa": ("mrpc_ffa", ()),
    "hlora": ("mrpc_hlora", ()),
    "hlora_fedfa": (
        "mrpc_hlora",
        (
            "schedule={name: fedfa, concurrency: 5, window: 5, mode: models}",
            "stop.versions=76",
            "eval.every_versions=8",
        ),
    ),
}
TINY = (
    "model.random_init={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64}",
    "task.train_limit=240",
    "task.dev_limit=64",
    "training.local_steps=2",
    "eval.every_versions=1",
)
TINY_VERSIONS = {"hlora_fedfa": "stop.versions=6"}


def study_name(scale: str) -> str:
    return "dp_mrpc" + ("" if scale == "cpu" else f"_{scale}")


def privacy_sets(eps: str, clip: float) -> tuple[str, ...]:
    if eps == "inf":  # clipping only: what clipping costs, and the update norms
        return (f"privacy={{clip_norm: {clip}, noise_multiplier: 0.0, delta: {DELTA}}}",)
    return (f"privacy={{clip_norm: {clip}, epsilon: {eps}, delta: {DELTA}}}",)


def cells(
    seeds: Sequence[int], scale: str, threads: int | None, methods: Sequence[str], epsilons: Sequence[str], clip: float
) -> list[Cell]:
    out = []
    for m in methods:
        config, extra = METHODS[m]
        for eps in epsilons:
            for s in seeds:
                sets = [f"seed={s}", "output.progress=false", *extra, *privacy_sets(eps, clip)]
                if scale == "tiny":
                    sets += [*TINY, TINY_VERSIONS.get(m, "stop.versions=2")]
                if threads:
                    sets.append(f"training.threads={threads}")
                out.append(
                    Cell(
                        f"{m}/eps={eps}/seed={s}",
                        f"configs/protocol/{config}.yaml",
                        tuple(sets),
                        tags={"method": m, "epsilon": eps, "seed": str(s), "scale": scale, "clip": str(clip)},
                    )
                )
    return out


# ----- the table and the figure ---------------------------------------------------------------------------


def records(study: str, methods: Sequence[str], epsilons: Sequence[str], seeds: Sequence[int]) -> dict:
    data: dict = {}
    for m in methods:
        for e in epsilons:
            for s in seeds:
                rec = load_record(study, Cell(f"{m}/eps={e}/seed={s}", ""))
                if rec is not None:
                    data.setdefault(m, {}).setdefault(e, {})[s] = rec
    return data


def table(data: dict, epsilons: Sequence[str]) -> str:
    head = " | ".join(f"eps={e}" for e in epsilons)
    lines = [
        f"| method | {head} | noise multiplier (eps={epsilons[0]}) | {_NSR_HEAD} | clipped share (eps=inf) |",
        "| --- | " + " | ".join("---:" for _ in epsilons) + " | ---: | ---: | ---: |",
    ]
    for m, by_eps in data.items():
        cols = []
        for e in epsilons:
            recs = list(by_eps.get(e, {}).values())
            acc = [r["final"]["metrics"]["accuracy"] for r in recs]
            spent = [r["privacy"]["epsilon"] for r in recs if r.get("privacy", {}).get("epsilon") is not None]
            tail = f" (spent {statistics.mean(spent):.2f}, n={len(recs)})" if spent else f" (n={len(recs)})"
            cols.append(mean_std(acc) + tail if recs else "-")
        first = list(by_eps.get(epsilons[0], {}).values())
        sigma = f"{first[0]['privacy']['noise_multiplier']:.3f}" if first else "-"
        cols_inf = list(by_eps.get("inf", {}).values())
        clipped = "-"
        if cols_inf:
            shares = []
            for r in cols_inf:
                stats = r.get("privacy", {}).get("clipping")
                if stats:
                    shares.append(stats["clipped"] / max(stats["updates"], 1))
            clipped = f"{statistics.mean(shares):.2f}" if shares else "-"
        lines.append(f"| {m} | " + " | ".join(cols) + f" | {sigma} | {noise_to_signal(by_eps, epsilons)} | {clipped} |")
    return "\n".join(lines)


_NSR_HEAD = "noise/signal sigma sqrt(n), loosest eps"


def noise_to_signal(by_eps: dict, epsilons: Sequence[str]) -> str:
    """sigma sqrt(n) at the largest finite epsilon: the noise's norm against the bound on one client's
    contribution (n = numbers noised per release, recorded in the summary's clipping block)."""
    finite = [e for e in epsilons if e != "inf" and by_eps.get(e)]
    if not finite:
        return "-"
    rec = next(iter(by_eps[finite[-1]].values()))
    n = rec.get("privacy", {}).get("clipping", {}).get("noised_coordinates")
    return f"{rec['privacy']['noise_multiplier'] * math.sqrt(n):,.0f}" if n else "-"


def paired(data: dict, a: str, b: str, epsilons: Sequence[str]) -> str:
    parts = []
    for e in epsilons:
        ra, rb = data.get(a, {}).get(e, {}), data.get(b, {}).get(e, {})
        common = sorted(set(ra) & set(rb))
        if not common:
            continue
        d = [ra[s]["final"]["metrics"]["accuracy"] - rb[s]["final"]["metrics"]["accuracy"] for s in common]
        pos, neg = sum(x > 0 for x in d), sum(x < 0 for x in d)
        parts.append(f"eps={e}: {statistics.mean(d):+.4f} ({pos}+ / {neg}- of {len(d)})")
    return f"{a} - {b}, final accuracy: " + ("; ".join(parts) if parts else "no common cells")


def figure(data: dict, epsilons: Sequence[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    xs = list(range(len(epsilons)))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m, by_eps in data.items():
        pts = [
            (x, statistics.mean(r["final"]["metrics"]["accuracy"] for r in by_eps[e].values()))
            for x, e in zip(xs, epsilons, strict=True)
            if by_eps.get(e)
        ]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
    ax.axhline(0.684, color="grey", ls=":", lw=1, label="majority class")
    ax.set_xticks(xs, [("∞ (clip only)" if e == "inf" else f"ε={e}") for e in epsilons])
    ax.set_xlabel(f"client-level epsilon at delta={DELTA:g}")
    ax.set_ylabel("MRPC dev accuracy (final, mean over seeds)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--epsilons", nargs="+", default=list(EPSILONS))
    ap.add_argument("--clip", type=float, default=CLIP, help="privacy.clip_norm of every cell")
    ap.add_argument("--scale", choices=("cpu", "tiny"), default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="cells in parallel (each with training.threads=1)")
    ap.add_argument("--table", action="store_true", help="only print the table from the records")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    args = ap.parse_args()
    study = study_name(args.scale)
    threads = 1 if args.jobs > 1 else None
    eps_order = sorted(args.epsilons, key=lambda e: math.inf if e == "inf" else float(e))
    if not args.table:
        todo = cells(args.seeds, args.scale, threads, args.methods, eps_order, args.clip)
        run_all(study, todo, args.runs_dir, args.jobs)
    data = records(study, list(METHODS), eps_order, args.seeds)
    text = table(data, eps_order)
    pairs = [paired(data, "ffa", "fedit", eps_order), paired(data, "hlora", "hlora_fedfa", eps_order)]
    out = DOCS_RESULTS / study
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text + "\n\n" + "\n".join(f"- {p}" for p in pairs) + "\n")
    if data:
        figure(data, eps_order, out / "accuracy_vs_epsilon.png")
    print(text)
    print("\n".join(pairs))
    count = sum(len(s) for e in data.values() for s in e.values())
    print(json.dumps({"study": study, "records": count, "dir": str(out)}))


if __name__ == "__main__":
    main()
