"""What running on Flower costs: the same small run in-process and on Flower's simulation engine (Ray).

Both runs use one config (async FedBuff, HLoRA, speed-tier ranks) and give identical numbers; only the
transport differs. A third row, `flower_native`, is the peer without fedlora: the same small workload as a
user's own Flower app (flower_native.py: Flower's FedAvg over peft LoRA factors, every client at full rank),
so what fedlora adds on top of Flower shows beside what Flower adds on top of in-process. Its numbers are its
own (another aggregator and schedule), so only the two fedlora rows are compared for identical summaries.
A fourth row, `inprocess_batched`, is fedlora's in-process transport with `batch_jobs: auto` (the jobs in
flight trained together in one stacked pass over the frozen base; numbers equal to the sequential ones within
float tolerance, so it is not part of the identical-summaries check). Each run is a fresh subprocess; the
parent samples the resident memory of that process and all its
descendants (Ray's GCS, raylet and worker actors included) every 0.1 s and reports the peak, and the wall
time from start to exit (Python start-up and model loading included, in all four).

    python benchmarks/flower_overhead.py --quick     # tiny random BERT (seconds per run)
    python benchmarks/flower_overhead.py             # the bundled MiniLM
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, RESULTS, data_dir


def overrides(quick: bool, workers: int, threads: int) -> list[str]:
    common = [
        f"task.data_dir={data_dir()}",
        "output.progress=false",
        f"training.threads={threads}",
        "clients.count=4",
        "clients.speeds={name: list, values: [1.0, 2.0, 0.5, 1.0]}",
        "clients.ranks={name: speed_tier}",
        "aggregator.name=hlora",
        "schedule={name: fedbuff, buffer_size: 2}",
    ]
    if quick:
        return [*common, "stop.versions=6"]
    return [*common, "model.random_init=null", "task.train_limit=480", "task.dev_limit=128", "stop.versions=6"]


def child(transport: str, out: str, quick: bool, workers: int, threads: int) -> None:
    from fedlora.config import load_config
    from fedlora.experiment import run_experiment

    if transport == "inprocess_batched":  # fedlora's batched jobs: the dispatched jobs in one stacked pass
        extra = ["transport={name: inprocess, batch_jobs: auto}"]
    elif transport != "inprocess":
        extra = [f"transport={{name: {transport}, workers: {workers}}}"]
    else:
        extra = []
    cfg = load_config(REPO / "configs" / "tiny.yaml", [*overrides(quick, workers, threads), *extra])
    summary = run_experiment(cfg, out=out)
    Path(out, "bench.json").write_text(json.dumps({"final": summary["final"], "totals": summary["totals"]}))


def tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def measure(transport: str, quick: bool, workers: int, threads: int) -> dict:
    """One run in a fresh subprocess: fedlora's (`--child`) or, for flower_native, the Flower app's own script."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "run")
        args = ["--workers", str(workers), "--threads", str(threads)] + (["--quick"] if quick else [])
        if transport == "flower_native":
            cmd = [sys.executable, str(Path(__file__).with_name("flower_native.py")), "--out", f"{out}/bench.json"]
        else:
            cmd = [sys.executable, __file__, "--child", transport, "--out", out]
        t0 = time.perf_counter()
        with open(Path(tmp) / "stderr.txt", "w+") as err:  # a file, not a pipe: a chatty run cannot block on it
            proc = subprocess.Popen([*cmd, *args], stdout=subprocess.DEVNULL, stderr=err, text=True)
            peak = 0
            while proc.poll() is None:
                peak = max(peak, tree_rss(proc.pid))
                time.sleep(0.1)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"{transport} run failed:\n{err.read()[-3000:]}")
        bench = json.loads(Path(out, "bench.json").read_text())
    result = {"final": bench["final"], "totals": bench["totals"]}
    return {"transport": transport, "wall_s": round(wall, 2), "peak_rss_mb": round(peak / 2**20, 1), **result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny random BERT instead of MiniLM")
    ap.add_argument("--workers", type=int, default=2, help="Flower simulation: parallel client workers")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.out, args.quick, args.workers, args.threads)
        return

    from rich.console import Console
    from rich.table import Table

    transports = ("inprocess", "inprocess_batched", "flower_simulation", "flower_native")
    rows = [measure(t, args.quick, args.workers, args.threads) for t in transports]
    base = rows[0]
    # the native run has numbers of its own; the batched one equals the sequential within float tolerance
    fedlora_rows = [r for r in rows if r["transport"] in ("inprocess", "flower_simulation")]
    same = all(r["final"] == base["final"] and r["totals"] == base["totals"] for r in fedlora_rows)
    table = Table(title=f"Flower overhead ({'tiny' if args.quick else 'MiniLM'}, {args.workers} workers)")
    for col in ("transport", "wall s", "x in-process", "peak RSS MB (tree)", "x in-process", "final accuracy"):
        table.add_column(col, justify="right")
    for r in rows:
        r["wall_ratio"] = round(r["wall_s"] / base["wall_s"], 2)
        r["rss_ratio"] = round(r["peak_rss_mb"] / base["peak_rss_mb"], 2)
        acc = r["final"]["metrics"].get("accuracy", float("nan"))
        table.add_row(
            r["transport"], f"{r['wall_s']:.1f}", f"{r['wall_ratio']:.2f}", f"{r['peak_rss_mb']:.0f}",
            f"{r['rss_ratio']:.2f}", f"{acc:.4f}",
        )  # fmt: skip
    Console().print(table)
    Console().print(f"identical summaries: {same} (inprocess and flower_simulation; flower_native has its own)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "flower_overhead_quick.json" if args.quick else "flower_overhead.json"
    record = {"quick": args.quick, "workers": args.workers, "threads": args.threads, "identical": same, "runs": rows}
    (RESULTS / name).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
