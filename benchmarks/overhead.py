"""Orchestration overhead: the same local training steps inside `fedlora run` and as a plain peft loop.

Both variants load MiniLM, tokenize MRPC, train LoRA r=8 for the same number of optimizer steps of the same
batch size, and evaluate the dev set twice (before and after, as a run does at version 0 and at the end).
Each variant runs in its own subprocess so that its peak RSS is its own; the variants alternate, and the
ratio of medians is reported. Target: fedlora at most 1.05x the plain loop. The fedlora side is pinned to
what the plain loop does (LoRA on query/value, BERT's pooler, constant lr, no length grouping), in the frozen
base dtype both sides are given (`--dtype`, bfloat16 by default as in the shipped configs).

OpenMP: importing fedlora sets a short spin-wait (GOMP_SPINCOUNT=1000) before torch loads, which a plain loop
that imports torch first never gets. By default (`--openmp same`) both children run under the environment
fedlora's import produces, so the ratio measures fedlora's orchestration; the wait setting's own cost and
benefit are measured by threads_under_load.py. `--openmp shipped` gives the plain loop libgomp's default
instead, as a user's own script would run.

    python benchmarks/overhead.py [--versions 3 --clients 2 --local-steps 10 --repeats 1 --dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, RESULTS, data_dir


def run_plain(steps: int, batch_size: int, lr: float, seed: int, dtype: str, threads: int | None) -> dict:
    """A plain peft training loop: what a user would write without fedlora."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from sklearn.metrics import accuracy_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fedlora.data.glue import load_glue
    from fedlora.models.loading import resolve_model_path

    t0 = time.perf_counter()
    path = resolve_model_path("minilm")
    tok = AutoTokenizer.from_pretrained(path)
    train = load_glue("mrpc", "train", data_dir())
    dev = load_glue("mrpc", "dev", data_dir())
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, dtype=getattr(torch, dtype))
    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], modules_to_save=["classifier"])
    )
    enc_train = tok(train.text_a, train.text_b, truncation=True, max_length=128)
    enc_dev = tok(dev.text_a, dev.text_b, truncation=True, max_length=128)

    def batch(enc, labels, idx):
        feats = [{k: enc[k][i] for k in ("input_ids", "token_type_ids", "attention_mask")} for i in idx]
        out = tok.pad(feats, return_tensors="pt")
        out["labels"] = torch.tensor([labels[i] for i in idx])
        return out

    def evaluate() -> float:
        model.eval()
        preds = []
        order = np.argsort([len(x) for x in enc_dev["input_ids"]], kind="stable")
        with torch.no_grad():
            for s in range(0, len(order), 128):
                idx = order[s : s + 128]
                preds += model(**batch(enc_dev, dev.labels, idx)).logits.argmax(-1).tolist()
        return float(accuracy_score(np.asarray(dev.labels)[order], preds))

    evaluate()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    model.train()
    for step in range(steps):
        idx = order[(step * batch_size) % len(order) :][:batch_size]
        loss = model(**batch(enc_train, train.labels, idx)).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
    acc = evaluate()
    return {"seconds": time.perf_counter() - t0, "accuracy": acc}


def run_fedlora(
    versions: int,
    clients: int,
    local_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    out: str,
    dtype: str,
    threads: int | None,
) -> dict:
    from fedlora.config import load_config
    from fedlora.experiment import run_experiment

    t0 = time.perf_counter()
    cfg = load_config(
        REPO / "configs" / "quickstart.yaml",
        [
            f"task.data_dir={data_dir()}",
            f"clients.count={clients}",
            f"schedule.per_round={clients}",
            f"training.local_steps={local_steps}",
            f"training.batch_size={batch_size}",
            f"training.lr={lr}",
            "training.head_lr=null",
            f"model.dtype={dtype}",
            f"training.threads={threads or 'null'}",
            "model.pooling=cls",
            "lora.rank=8",
            "lora.alpha=16",
            "lora.target_modules=[query,value]",
            "training.lr_schedule=constant",
            "training.warmup_ratio=0",
            "training.group_by_length=false",
            f"stop.versions={versions}",
            "eval.every_versions=null",
            f"seed={seed}",
            "output.progress=false",
            f"output.checkpoint_every={versions}",
        ],
    )
    summary = run_experiment(cfg, out=out)
    return {"seconds": time.perf_counter() - t0, "accuracy": summary["final"]["metrics"]["accuracy"]}


def child(args) -> None:
    steps = args.versions * args.clients * args.local_steps
    if args.variant == "plain":
        res = run_plain(steps, args.batch_size, args.lr, args.seed, args.dtype, args.threads)
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            res = run_fedlora(
                args.versions,
                args.clients,
                args.local_steps,
                args.batch_size,
                args.lr,
                args.seed,
                str(Path(tmp) / "run"),
                args.dtype,
                args.threads,
            )
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["steps"] = steps
    print("RESULT " + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", type=int, default=3)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--local-steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    ap.add_argument("--threads", type=int, default=None, help="torch threads on both sides (default: torch's)")
    ap.add_argument("--openmp", choices=["same", "shipped"], default="same", help="see the module docstring")
    ap.add_argument("--variant", choices=["plain", "fedlora"], help=argparse.SUPPRESS)
    ap.add_argument("--json", default=str(RESULTS / "overhead.json"))
    args = ap.parse_args()
    if args.variant:
        child(args)
        return
    common = [
        f"--versions={args.versions}",
        f"--clients={args.clients}",
        f"--local-steps={args.local_steps}",
        f"--batch-size={args.batch_size}",
        f"--lr={args.lr}",
        f"--seed={args.seed}",
        f"--dtype={args.dtype}",
        *([f"--threads={args.threads}"] if args.threads else []),
    ]
    user_env = dict(os.environ)
    import fedlora  # noqa: F401  (applies fedlora's OpenMP default to os.environ, for the children to inherit)

    envs = {"fedlora": dict(os.environ), "plain": dict(os.environ) if args.openmp == "same" else user_env}
    results: dict[str, list[dict]] = {"plain": [], "fedlora": []}
    for _ in range(args.repeats):
        for variant in ("plain", "fedlora"):
            proc = subprocess.run(
                [sys.executable, __file__, f"--variant={variant}", *common],
                capture_output=True,
                text=True,
                check=True,
                env=envs[variant],
            )
            line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
            results[variant].append(json.loads(line[len("RESULT ") :]))
    med = {v: statistics.median(r["seconds"] for r in rs) for v, rs in results.items()}
    ratio = med["fedlora"] / med["plain"]
    from rich.console import Console
    from rich.table import Table

    steps = results["plain"][0]["steps"]
    table = Table(title=f"overhead: {steps} local steps of {args.batch_size}, MiniLM LoRA r=8, {args.dtype} base")
    for col in ("variant", "median seconds", "peak RSS MiB", "dev accuracy"):
        table.add_column(col)
    for v, rs in results.items():
        table.add_row(v, f"{med[v]:.1f}", f"{max(r['peak_rss_mib'] for r in rs):.0f}", f"{rs[-1]['accuracy']:.4f}")
    Console().print(table)
    Console().print(f"ratio fedlora / plain = {ratio:.3f} (target <= 1.05); OpenMP: {args.openmp}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"args": vars(args), "results": results, "median_seconds": med, "ratio": ratio}, indent=2)
    )


if __name__ == "__main__":
    main()
