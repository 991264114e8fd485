"""Peak memory against the number of simulated clients, for the same total work.

Each client count runs a whole experiment in its own subprocess (fresh memory) and reports its peak resident
set size (`ru_maxrss`). The work is the same at every count: `--versions` FedAvg rounds of `--per-round`
clients, `--steps` local steps each, on the same training data; only the pool of clients the rounds sample
from grows. So what the peak grows by is what the engine keeps per client: its partition indices, its place
in the world (rank, speed, bandwidth), its job counters and, for an aggregator that keeps client state
(FedSA's local B), that state. Every client holds at least one batch (`--batch-size`, 2 by default: 2,000
training pairs over 1,000 clients), so every step does the same work at every count; a client smaller than a
batch would train on all it has, and the 1,000-client run would do less work and look lighter than it is.

    python benchmarks/memory.py                          # tiny model, 10/100/1000 clients, hlora
    python benchmarks/memory.py --aggregator fedsa       # a client-state aggregator
    python benchmarks/memory.py --model minilm           # all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, RESULTS, data_dir


def child(spec: dict) -> dict:
    from fedlora.config import load_config
    from fedlora.experiment import run_experiment

    overrides = [
        f"task.data_dir={data_dir()}",
        "output.progress=false",
        "training.threads=1",
        f"clients.count={spec['clients']}",
        f"schedule.per_round={spec['per_round']}",
        f"stop.versions={spec['versions']}",
        f"training.local_steps={spec['steps']}",
        f"task.train_limit={spec['train_limit']}",
        f"training.batch_size={spec['batch_size']}",
        f"aggregator.name={spec['aggregator']}",
        f"transport.batch_jobs={spec['batch_jobs']}",
        "eval.every_versions=1000000",
        "output.checkpoint_every=1000000",
    ]
    if spec["model"] == "minilm":
        overrides += ["model.random_init=null"]
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_experiment(cfg, out=Path(tmp) / "run")
    return {
        **spec,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "jobs": summary["totals"]["jobs_arrived"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--model", choices=["tiny", "minilm"], default="tiny")
    parser.add_argument("--aggregator", default="hlora")
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument(
        "--batch-size", type=int, default=2, help="every client's batch; train-limit / max clients must hold one"
    )
    parser.add_argument("--batch-jobs", default="off")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.train_limit // max(args.clients) < args.batch_size:
        # a client smaller than a batch trains on all it has, so the work per step would shrink with the count
        parser.error(
            f"--train-limit {args.train_limit} gives {max(args.clients)} clients "
            f"{args.train_limit // max(args.clients)} examples each, fewer than --batch-size {args.batch_size}: "
            "raise --train-limit or lower --batch-size so that the work is the same at every client count"
        )
    rows = []
    for n in args.clients:
        spec = {
            "clients": n,
            "model": args.model,
            "aggregator": args.aggregator,
            "per_round": min(args.per_round, n),
            "versions": args.versions,
            "steps": args.steps,
            "train_limit": args.train_limit,
            "batch_size": args.batch_size,
            "batch_jobs": args.batch_jobs,
        }
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"memory child for {n} clients failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["peak_rss_mb"]
    for r in rows:
        r["vs_first"] = round(r["peak_rss_mb"] / base, 3)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Peak RSS, same total work ({args.versions} rounds x {args.per_round} clients), {args.model}")
    for col in ("clients", "aggregator", "jobs", "peak RSS MB", f"vs {rows[0]['clients']} clients", "seconds"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["clients"]),
            r["aggregator"],
            str(r["jobs"]),
            f"{r['peak_rss_mb']:.0f}",
            f"{r['vs_first']:.3f}x",
            f"{r['seconds']:.0f}",
        )
    Console(width=140).print(table)
    out = args.out or RESULTS / f"memory_{args.model}_{args.aggregator}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
