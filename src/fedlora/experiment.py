"""Build everything from a validated config, run it, and write the run directory.

This is the only place that reads the config object; everything below it gets plain typed arguments.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedlora.aggregators import AGGREGATORS, get_aggregator
from fedlora.clients.ranks import RANK_POLICIES
from fedlora.clients.speeds import draw_speeds
from fedlora.config import ExperimentConfig, dump_config, load_config
from fedlora.data.glue import load_glue, task_spec
from fedlora.data.partitioners import PARTITIONERS, PartitionInputs
from fedlora.data.tokenized import TokenizedPairs, tokenize_pairs
from fedlora.engine.cost import CostModel
from fedlora.engine.server import ClientWorld, Server, StopRules
from fedlora.engine.transport.inprocess import InProcessTransport
from fedlora.errors import ConfigError
from fedlora.io.rundir import EventLog, RunDir
from fedlora.io.state import load_state, save_adapter, save_state
from fedlora.lora.init import fresh_adapter
from fedlora.models.loading import default_target_modules, load_classifier, load_tokenizer
from fedlora.schedules import SCHEDULES
from fedlora.seeding import numpy_rng, seed_torch, torch_generator
from fedlora.training.evaluate import evaluate
from fedlora.training.host import ModelHost
from fedlora.training.local import LocalTrainingSpec, train_local


@dataclass
class Prepared:
    """Everything a run needs that does not depend on the run's progress."""

    cfg: ExperimentConfig
    host: ModelHost
    train: TokenizedPairs
    dev: TokenizedPairs
    partitions: list[np.ndarray]
    metric_names: tuple[str, ...]


def get_aggregator_class(name: str):
    return AGGREGATORS.get(name)


def default_run_name(cfg: ExperimentConfig) -> str:
    return f"{cfg.task.name}-{cfg.aggregator.name}-{cfg.schedule.name}-{cfg.partition.name}-s{cfg.seed}"


def prepare(cfg: ExperimentConfig) -> Prepared:
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    spec = task_spec(cfg.task.name)
    train_pairs = load_glue(cfg.task.name, "train", cfg.task.data_dir)
    dev_pairs = load_glue(cfg.task.name, "dev", cfg.task.data_dir)
    if cfg.task.train_limit and cfg.task.train_limit < len(train_pairs):
        keep = np.sort(numpy_rng(cfg.seed, "train-limit").permutation(len(train_pairs))[: cfg.task.train_limit])
        train_pairs = train_pairs.subset(keep)
    if cfg.task.dev_limit and cfg.task.dev_limit < len(dev_pairs):
        dev_pairs = dev_pairs.subset(range(cfg.task.dev_limit))
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.gguf_file)
    train = tokenize_pairs(tokenizer, train_pairs, cfg.task.max_length)
    dev = tokenize_pairs(tokenizer, dev_pairs, cfg.task.max_length)

    seed_torch(cfg.seed, "model-init")  # the new classifier head (and a random_init model) are seeded
    model = load_classifier(
        cfg.model.name,
        num_labels=2,
        random_init=cfg.model.random_init,
        gguf_file=cfg.model.gguf_file,
        pad_token_id=tokenizer.pad_token_id,
    )
    targets = cfg.lora.target_modules or default_target_modules(model.config.model_type)
    host = ModelHost(
        model,
        targets,
        alpha=cfg.lora.alpha,
        dropout=cfg.lora.dropout,
        train_head=cfg.lora.train_head,
        max_rank=cfg.lora.rank,
    )

    partitioner = PARTITIONERS.get(cfg.partition.name)(cfg.partition.typed_options(), cfg.seed)
    inputs = PartitionInputs(
        labels=train.labels, lengths=train.lengths, text_a=train_pairs.text_a, text_b=train_pairs.text_b
    )
    partitions = partitioner.split(inputs, cfg.clients.count)
    return Prepared(cfg, host, train, dev, partitions, spec.metrics)


def client_world(cfg: ExperimentConfig, partitions: list[np.ndarray], speeds: np.ndarray) -> ClientWorld:
    n = cfg.clients.count
    policy = RANK_POLICIES.get(cfg.clients.ranks.name)(cfg.clients.ranks.typed_options())
    samples = np.array([len(p) for p in partitions])
    ranks = [int(r) for r in policy.assign(n, cfg.lora.rank, speeds, samples, cfg.seed)]
    for c, r in enumerate(ranks):
        if not 1 <= r <= cfg.lora.rank:
            raise ConfigError(f"clients.ranks: client {c} got rank {r}, outside 1..lora.rank={cfg.lora.rank}")
    if len(set(ranks)) > 1 and not get_aggregator_class(cfg.aggregator.name).supports_mixed_ranks:
        raise ConfigError(
            f"aggregator.name={cfg.aggregator.name} needs equal ranks but clients.ranks gives "
            f"{sorted(set(ranks))}; use a heterogeneous-rank aggregator such as hlora"
        )
    if cfg.training.local_steps is not None:
        steps = [cfg.training.local_steps] * n
    else:
        steps = [max(1, math.ceil(cfg.training.local_epochs * len(p) / cfg.training.batch_size)) for p in partitions]
    return ClientWorld(ranks=ranks, alphas=[cfg.lora.alpha] * n, steps=steps, samples=[len(p) for p in partitions])


def training_spec(cfg: ExperimentConfig) -> LocalTrainingSpec:
    t = cfg.training
    return LocalTrainingSpec(
        batch_size=t.batch_size,
        lr=t.lr,
        head_lr=t.head_lr,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=cfg.seed,
    )


def calibrate_step_seconds(prep: Prepared, adapter, spec: LocalTrainingSpec, steps: int = 4) -> float:
    """Real seconds per local step on this machine, measured once (after one warm-up step)."""
    idx = prep.partitions[0]
    train_local(prep.host, adapter, prep.train, idx, 1, spec, client=-1, client_job=0)
    t0 = time.perf_counter()
    train_local(prep.host, adapter, prep.train, idx, steps, spec, client=-1, client_job=1)
    return (time.perf_counter() - t0) / steps


def partition_table(prep: Prepared) -> list[dict[str, Any]]:
    rows = []
    for c, idx in enumerate(prep.partitions):
        labels = prep.train.labels[idx]
        lengths = prep.train.lengths[idx]
        rows.append(
            {
                "client": c,
                "examples": len(idx),
                "label_share": [round(float(np.mean(labels == k)), 4) for k in (0, 1)],
                "length_mean": round(float(lengths.mean()), 2),
                "length_quartiles": [float(q) for q in np.percentile(lengths, [25, 50, 75])],
            }
        )
    return rows


class Progress:
    """A rich progress bar (version, virtual time, last dev metric) plus one printed line per evaluation."""

    def __init__(self, cfg: ExperimentConfig, enabled: bool):
        self.enabled = enabled
        self.metric = cfg.eval.metric
        self.total = cfg.stop.versions
        self._progress = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self._progress = RichProgress(
                TextColumn("[bold]fedlora"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
            )
            self._task = self._progress.add_task("run", total=self.total, status="starting")

    def __enter__(self) -> Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, server: Server) -> None:
        if self._progress is None:
            return
        last = server.history[-1]["metrics"] if server.history else {}
        status = f"v{server.version} t={server.now:,.0f}s {self.metric}={last.get(self.metric, float('nan')):.4f}"
        self._progress.update(self._task, completed=server.version, status=status)

    def evaluation(self, server: Server) -> None:
        if self._progress is None:
            return
        p = server.history[-1]
        metrics = " ".join(f"{k}={v:.4f}" for k, v in p["metrics"].items())
        self._progress.console.print(f"version {p['version']:>4}  virtual {p['virtual_s']:>10,.1f}s  {metrics}")
        self.update(server)


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path | None = None,
    resume: bool = False,
    on_version=None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) one experiment; returns the summary that is also written to summary.json."""
    rd = RunDir(out if out is not None else Path(cfg.output.dir) / (cfg.output.name or default_run_name(cfg)))
    resolved = dump_config(cfg)
    if rd.path.exists() and any(rd.path.iterdir()):
        if not resume:
            raise ConfigError(
                f"run directory {rd.path} already exists; pass --resume to continue it or --out elsewhere"
            )
        if rd.config.is_file() and rd.config.read_text() != resolved:
            raise ConfigError(
                f"--resume: the config differs from the one recorded in {rd.config}; "
                "resume with the same config (or use a new --out)"
            )
        if rd.is_finished():
            return rd.read_json(rd.summary)
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.config.write_text(resolved)

    prep = prepare(cfg)
    host = prep.host
    spec = training_spec(cfg)
    aggregator = get_aggregator(cfg.aggregator.name, rank=cfg.lora.rank, **cfg.aggregator.options)
    schedule = SCHEDULES.get(cfg.schedule.name)(cfg.schedule.typed_options(), cfg.clients.count, cfg.seed)
    speeds = draw_speeds(cfg.clients.speeds, cfg.clients.count, cfg.seed)
    world = client_world(cfg, prep.partitions, speeds)
    for r in set(world.ranks):
        host.check_rank(r)
    initial = fresh_adapter(
        host.layer_shapes,
        cfg.lora.rank,
        cfg.lora.alpha,
        torch_generator(cfg.seed, "adapter-init"),
        extras=host.head_template(),
    )

    record = rd.read_json(rd.run_record) if resume and rd.run_record.is_file() else {}
    if cfg.training.step_seconds == "calibrate":
        if "step_seconds" not in record:
            record["step_seconds"] = calibrate_step_seconds(prep, initial, spec)
        step_seconds = float(record["step_seconds"])
    else:
        step_seconds = float(cfg.training.step_seconds)
    record.setdefault("step_seconds", step_seconds)
    record.setdefault("partition", partition_table(prep))
    record["torch_threads"] = torch.get_num_threads()
    rd.write_json(rd.run_record, record)

    cost = CostModel(
        step_seconds=step_seconds,
        speeds=speeds,
        bandwidth=np.full(cfg.clients.count, cfg.clients.bandwidth),
        latency_s=cfg.clients.latency_s,
    )
    transport = InProcessTransport(host, prep.train, prep.partitions, spec, freeze_A=aggregator.freezes_A)

    def eval_global(adapter) -> dict[str, float]:
        return evaluate(host, adapter, prep.dev, cfg.eval.batch_size, prep.metric_names)

    state = load_state(rd.checkpoint) if resume and rd.has_checkpoint() else None
    log = EventLog(rd.events, keep_lines=state["events_written"] if state else None)
    show = cfg.output.progress if progress is None else progress
    with Progress(cfg, enabled=show) as bar:
        server = Server(
            aggregator=aggregator,
            schedule=schedule,
            transport=transport,
            cost=cost,
            world=world,
            initial_adapter=initial,
            evaluate=eval_global,
            stop=StopRules(cfg.stop.versions, cfg.stop.virtual_seconds, cfg.stop.target_accuracy, cfg.stop.samples),
            metric=cfg.eval.metric,
            eval_every_versions=cfg.eval.every_versions,
            eval_every_seconds=cfg.eval.every_seconds,
            checkpoint_every=cfg.output.checkpoint_every,
            save_checkpoint=lambda st: save_state(rd.checkpoint, st),
            record=log,
            on_progress=bar.evaluation,
            on_version=_chain(bar.update, on_version),
        )
        if state is not None:
            server.load_state_dict(state)
        try:
            server.run()
        finally:
            log.close()
    summary = server.summary()
    summary["run_dir"] = str(rd.path)
    summary["step_seconds"] = step_seconds
    save_adapter(rd.path / "global_adapter.safetensors", server.global_adapter, {"version": server.version})
    host.save_peft(server.global_adapter, rd.adapter_dir)
    rd.write_json(rd.summary, summary)
    return summary


def _chain(*fns):
    fns = [f for f in fns if f is not None]

    def call(server: Server) -> None:
        for f in fns:
            f(server)

    return call


def run_from_file(
    path: str | Path, overrides: list[str] | None = None, out: str | Path | None = None, resume: bool = False
) -> dict[str, Any]:
    return run_experiment(load_config(path, overrides), out=out, resume=resume)


def deterministic_view(summary: dict[str, Any]) -> str:
    """The summary without wall-clock fields: equal across reruns, parallel runs and resumes."""
    return json.dumps({k: v for k, v in summary.items() if k not in ("timing", "run_dir")}, sort_keys=True)
