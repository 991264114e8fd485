"""Torch threads beside another busy process: OpenMP's spin-wait against a passive wait, idle and loaded.

Why: on a 2-core machine a second torch process (another run, a test, this very benchmark's load) holds a
core; libgomp's default active wait makes each of the trainer's threads spin for the core the other process
holds, and one step can take a hundred times longer. fedlora sets OMP_WAIT_POLICY=PASSIVE on import (before
torch loads). This script times the same MiniLM-sized LoRA-like step in fresh processes under each policy,
with the machine idle and with a competing process doing 384x384 matrix products, side by side in one run.

    python benchmarks/threads_under_load.py [--steps 20] [--out benchmarks/results/threads_under_load.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS

WORKER = r"""
import sys, time, torch
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
# one encoder layer's worth of work at MiniLM width, batch 32 x 64 tokens, forward and backward
layer = torch.nn.TransformerEncoderLayer(384, 12, 1536, batch_first=True)
x = torch.randn(32, 64, 384)
for _ in range(2):
    layer(x).sum().backward()
t = time.perf_counter()
for _ in range(steps):
    layer(x).sum().backward()
print((time.perf_counter() - t) / steps)
"""

LOAD = r"""
import time, torch
torch.set_num_threads(1)
a = torch.randn(384, 384)
end = time.time() + 600
while time.time() < end:
    a = torch.tanh(a @ a)
"""


def time_step(policy: str | None, threads: int, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(threads), str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=1200,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=RESULTS / "threads_under_load.json")
    args = ap.parse_args()
    settings = [
        ("unset (libgomp default)", None, 2),
        ("ACTIVE", "ACTIVE", 2),
        ("PASSIVE (fedlora default)", "PASSIVE", 2),
        ("1 thread", None, 1),
    ]
    rows = []
    for load in (False, True):
        proc = subprocess.Popen([sys.executable, "-c", LOAD]) if load else None
        try:
            if proc:
                time.sleep(2)
            for label, policy, threads in settings:
                s = time_step(
                    policy,
                    threads,
                    args.steps if not load or policy == "PASSIVE" or threads == 1 else max(2, args.steps // 10),
                )
                rows.append(
                    {
                        "load": "beside a busy process" if load else "idle",
                        "setting": label,
                        "threads": threads,
                        "seconds_per_step": s,
                    }
                )
                print(f"{rows[-1]['load']:>22} | {label:<26} | {threads} threads | {s:.4f} s/step", flush=True)
        finally:
            if proc:
                proc.kill()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
