"""Seconds per local step of MiniLM LoRA on MRPC, variants alternated in one process (ratios side by side).

Why a separate benchmark: the search (learning_search.py) compares accuracy at equal steps, which is exact
whatever else the machine does; seconds are not. Here every variant trains the same jobs (the same examples),
round-robin, and the table reports the median seconds per step and the ratio to the old default (float32 base,
LoRA on query/value, unsorted batches).

    python benchmarks/step_speed.py [--steps 8 --repeats 3 --batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from common import REPO, RESULTS, data_dir

QV = "lora.target_modules=[query,value]"
ATTN = "lora.target_modules=[query,key,value,attention.output.dense]"
ALL = "lora.target_modules=[query,key,value,attention.output.dense,intermediate.dense,output.dense]"
VARIANTS = {
    "float32, q/v": ("model.dtype=float32", QV),
    "bfloat16, q/v": ("model.dtype=bfloat16", QV),
    "bfloat16, q/v, length-grouped": ("model.dtype=bfloat16", QV, "training.group_by_length=true"),
    "bfloat16, attention, length-grouped": ("model.dtype=bfloat16", ATTN, "training.group_by_length=true"),
    "bfloat16, attention+FFN, length-grouped": ("model.dtype=bfloat16", ALL, "training.group_by_length=true"),
    "bfloat16, q/v, mean pooling, length-grouped": (
        "model.dtype=bfloat16",
        QV,
        "training.group_by_length=true",
        "model.pooling=mean",
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(RESULTS / "step_speed.json"))
    args = ap.parse_args()

    import torch

    from fedlora.config import load_config
    from fedlora.experiment import prepare, training_spec
    from fedlora.lora.init import fresh_adapter
    from fedlora.seeding import torch_generator
    from fedlora.training.local import train_local

    built = {}
    for name, sets in VARIANTS.items():
        cfg = load_config(
            REPO / "configs" / "centralized_mrpc.yaml",
            [f"task.data_dir={data_dir()}", f"training.batch_size={args.batch_size}", "lora.rank=8", *sets],
        )
        prep = prepare(cfg)
        spec = training_spec(cfg)
        start = fresh_adapter(
            prep.host.layer_shapes, 8, 16.0, torch_generator(0, "x"), extras=prep.host.head_template()
        )
        train_local(prep.host, start, prep.train, prep.partitions[0], 1, spec, client=0, client_job=99)  # warm-up
        built[name] = (prep, spec, start)
    times: dict[str, list[float]] = {n: [] for n in VARIANTS}
    for rep in range(args.repeats):
        for name, (prep, spec, start) in built.items():
            t0 = time.perf_counter()
            train_local(prep.host, start, prep.train, prep.partitions[0], args.steps, spec, client=0, client_job=rep)
            times[name].append((time.perf_counter() - t0) / args.steps)
    base = statistics.median(times["float32, q/v"])
    rows = []
    print(f"| variant | s/step (median of {args.repeats}) | speed-up vs float32 q/v |")
    print("| --- | ---: | ---: |")
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"variant": name, "seconds_per_step": med, "speedup": base / med, "all": ts})
        print(f"| {name} | {med:.3f} | {base / med:.2f}x |")
    info = {"threads": torch.get_num_threads(), "steps": args.steps, "batch_size": args.batch_size, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(info, fh, indent=1)


if __name__ == "__main__":
    main()
