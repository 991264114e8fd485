"""What buys the most MRPC dev accuracy per CPU second: centralized MiniLM LoRA, one seed, variant by variant.

Every row is `fedlora run configs/centralized_mrpc.yaml --set ...` at a fixed number of optimizer steps, so
seconds and accuracy compare side by side; records accumulate under docs/results/learning_search/.

    python benchmarks/learning_search.py                 # every variant not yet recorded, then the table
    python benchmarks/learning_search.py --only bf16 mean
    python benchmarks/learning_search.py --table         # only print the table from the records
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import REPO
from study import DOCS_RESULTS, Cell, load_record, run_cells

STUDY = "learning_search"
BASE = "configs/centralized_mrpc.yaml"
QV = "lora.target_modules=[query,value]"
ATTN = "lora.target_modules=[query,key,value,attention.output.dense]"
ALL = "lora.target_modules=[query,key,value,attention.output.dense,intermediate.dense,output.dense]"
OLD = (
    "model.dtype=float32",
    "model.pooling=cls",
    QV,
    "training.lr_schedule=constant",
    "training.warmup_ratio=0",
    "training.group_by_length=false",
    "training.lr=0.002",
    "training.head_lr=0.004",
    "lora.rank=8",
    "lora.alpha=16",
)


def steps(n: int, per_version: int = 50) -> tuple[str, ...]:
    return (f"training.local_steps={per_version}", f"stop.versions={n // per_version}")


def variant(name: str, n: int, *changes: str) -> Cell:
    """The old defaults (`OLD`) with `changes` applied on top (later keys win)."""
    sets: dict[str, str] = {}
    for s in (*OLD, *steps(n), *changes):
        k, _, _ = s.partition("=")
        sets[k] = s
    return Cell(name, BASE, tuple(sets.values()), tags={"steps": str(n)})


N = 150  # optimizer steps of 32 per search row: 1.3 epochs of MRPC
BF = "model.dtype=bfloat16"
GL = "training.group_by_length=true"
MEAN = "model.pooling=mean"
COS = ("training.lr_schedule=cosine", "training.warmup_ratio=0.1")
VARIANTS = [
    variant("fp32_qv_cls", N),
    variant("bf16_qv_cls", N, BF),
    variant("bf16_grouped_qv_cls", N, BF, GL),
    variant("bf16_grouped_qv_cls_trained", N, BF, GL, "model.pooling=cls_trained"),
    variant("bf16_grouped_qv_mean", N, BF, GL, MEAN),
    variant("bf16_grouped_attn_mean", N, BF, GL, MEAN, ATTN),
    variant("bf16_grouped_all_mean", N, BF, GL, MEAN, ALL),
    variant("bf16_grouped_qv_mean_cosine", N, BF, GL, MEAN, *COS),
    variant("bf16_grouped_qv_mean_cosine_lr5e-3", N, BF, GL, MEAN, *COS, "training.lr=0.005", "training.head_lr=0.01"),
    variant("bf16_grouped_qv_mean_cosine_lr1e-3", N, BF, GL, MEAN, *COS, "training.lr=0.001", "training.head_lr=0.002"),
    variant("bf16_grouped_qv_mean_cosine_r16", N, BF, GL, MEAN, *COS, "lora.rank=16", "lora.alpha=32"),
    variant("bf16_grouped_qv_mean_cosine_r4", N, BF, GL, MEAN, *COS, "lora.rank=4", "lora.alpha=8"),
    variant("bf16_grouped_qv_mean_cosine_bs16", 2 * N, BF, GL, MEAN, *COS, "training.batch_size=16"),
    variant("fp32_grouped_qv_mean_cosine", N, GL, MEAN, *COS),
    variant(
        "bf16_grouped_attn_mean_cosine_lr5e-3",
        N,
        BF,
        GL,
        MEAN,
        ATTN,
        *COS,
        "training.lr=0.005",
        "training.head_lr=0.01",
    ),
    variant("bf16_grouped_qv_mean_cosine_lr1e-2", N, BF, GL, MEAN, *COS, "training.lr=0.01", "training.head_lr=0.02"),
    variant(
        "bf16_grouped_qv_mean_cosine_lr5e-3_headlr5e-3",
        N,
        BF,
        GL,
        MEAN,
        *COS,
        "training.lr=0.005",
        "training.head_lr=0.005",
    ),
]


def table(cells: list[Cell]) -> str:
    lines = [
        "| variant | steps x batch | run s (train + 3 evals) | dev accuracy | dev F1 | dev loss | command |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in cells:
        s = load_record(STUDY, c)
        if s is None:
            continue
        m = s["final"]["metrics"]
        bs = next((x.split("=")[1] for x in c.sets if x.startswith("training.batch_size=")), "32")
        lines.append(
            f"| {c.name} | {c.tags['steps']} x {bs} | {s['timing']['real_seconds']:.0f} | {m['accuracy']:.4f} | "
            f"{m.get('f1', float('nan')):.4f} | {m['loss']:.4f} | `{c.command()}` |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    ap.add_argument("--table", action="store_true", help="print the table from the records, run nothing")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    args = ap.parse_args()
    cells = [c for c in VARIANTS if not args.only or c.name in args.only]
    if not args.table:
        run_cells(STUDY, cells, args.runs_dir)
    text = table(VARIANTS)
    print(text)
    (DOCS_RESULTS / STUDY).mkdir(parents=True, exist_ok=True)
    (DOCS_RESULTS / STUDY / "table.md").write_text(text + "\n")
    rows = {c.name: load_record(STUDY, c)["final"]["metrics"] for c in VARIANTS if load_record(STUDY, c)}
    (DOCS_RESULTS / STUDY / "table.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
