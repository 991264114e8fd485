"""Build everything from a validated config, run it, and write the run directory.

This is the only place that reads the config object; everything below it gets plain typed arguments.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fedlora.aggregators import AGGREGATORS, get_aggregator
from fedlora.clients.availability import Availability
from fedlora.clients.bandwidth import draw_bandwidth
from fedlora.clients.ranks import RANK_POLICIES
from fedlora.clients.speeds import draw_speeds
from fedlora.config import OWN_DATA_TASKS, ExperimentConfig, dump_config, load_config
from fedlora.data.glue import TextPairs, data_fingerprint, load_glue, task_spec
from fedlora.data.instruction_tokens import TokenizedInstructions, tokenize_instructions
from fedlora.data.local_split import carve_local_validation
from fedlora.data.own_data import check_metric, load_own_data, own_data_fingerprint
from fedlora.data.partitioners import PARTITIONERS, Corruption, Partitioner, PartitionInputs
from fedlora.data.prompts import TokenizedPrompts, prompt_spec, tokenize_prompts
from fedlora.data.tokenized import TokenizedData, tokenize_pairs
from fedlora.engine.cost import CostModel
from fedlora.engine.faults import Faults
from fedlora.engine.local_metrics import LocallyValidated, local_summary
from fedlora.engine.server import ClientWorld, Server, StopRules
from fedlora.engine.transport.base import Transport
from fedlora.engine.transport.inprocess import InProcessTransport
from fedlora.errors import ConfigError
from fedlora.io.rundir import EventLog, RunDir, writing
from fedlora.io.state import follow_umask, save_adapter, save_tensors
from fedlora.io.tensorboard import require_tensorboard, with_tensorboard
from fedlora.jobs import Job
from fedlora.lora.adapter import Adapter
from fedlora.lora.init import fresh_adapter
from fedlora.models.loading import default_target_modules, load_causal_lm, load_classifier, load_tokenizer
from fedlora.models.pooling import trainable_modules
from fedlora.schedules import SCHEDULES
from fedlora.seeding import numpy_rng, seed_torch, torch_generator
from fedlora.training.causal import accepts_logits_to_keep
from fedlora.training.evaluate import evaluate, evaluate_groups
from fedlora.training.host import ModelHost
from fedlora.training.local import LocalTrainingSpec, train_local

if TYPE_CHECKING:
    from fedlora.partition_report import PartitionReport

_log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything a run needs that does not depend on the run's progress."""

    cfg: ExperimentConfig
    host: ModelHost
    train: TokenizedData  # TokenizedPairs, or TokenizedPrompts for task.kind causal_lm
    dev: TokenizedData
    partitions: list[np.ndarray]
    metric_names: tuple[str, ...]
    data: PreparedData | None = None
    # each client's local validation split (eval.local_val_share > 0), carved out of `partitions`; else None
    local_val: list[np.ndarray] | None = None


@dataclass
class PreparedData:
    """The data side of a run: tokenised splits and the partition, without a model (`fedlora partition`)."""

    train_pairs: TextPairs  # as the clients hold them (after any corruption)
    train: TokenizedData  # TokenizedPairs, or TokenizedPrompts for task.kind causal_lm
    dev: TokenizedData
    partitioner: Partitioner
    inputs: PartitionInputs  # what the partitioner saw (before any corruption)
    partitions: list[np.ndarray]
    corruption: Corruption | None
    metric_names: tuple[str, ...]
    seed: int
    partition_name: str
    label_names: tuple[str, ...] | None = None  # text_classification: the class of each label id (recorded)


def get_aggregator_class(name: str):
    return AGGREGATORS.get(name)


def default_run_name(cfg: ExperimentConfig) -> str:
    return f"{cfg.task.name}-{cfg.aggregator.name}-{cfg.schedule.name}-{cfg.partition.name}-s{cfg.seed}"


def tokenize_fn(cfg: ExperimentConfig, tokenizer) -> Callable[[TextPairs], TokenizedData]:
    """TextPairs -> the tokenised split of the task's kind: sentence pairs, or prompts with yes/no answers.

    Own data: LabelledTexts tokenise as pairs (text_b None: single texts); InstructionExamples as prompt +
    response (data/instruction_tokens.py).
    """
    t = cfg.task
    if t.name == "instruction":
        args = (t.max_length, t.template, t.chat_template, t.exact_match_tokens)
        return lambda examples: tokenize_instructions(tokenizer, examples, *args)
    if cfg.task.kind == "causal_lm":
        prompt = cfg.task.prompt
        spec = prompt_spec(cfg.task.name, prompt.template if prompt else None, prompt.answers if prompt else None)
        return lambda pairs: tokenize_prompts(tokenizer, pairs, cfg.task.max_length, spec)
    return lambda pairs: tokenize_pairs(tokenizer, pairs, cfg.task.max_length)


def prepare_data(cfg: ExperimentConfig) -> PreparedData:
    """Load, tokenise and partition the data; a partitioner's corruption (noise) is applied here."""
    partitioner = PARTITIONERS.get(cfg.partition.name)(cfg.partition.typed_options(), cfg.seed)
    label_names = None
    if cfg.task.name in OWN_DATA_TASKS:  # the user's own files or hub dataset (docs/own-data.md)
        own = load_own_data(cfg.task, partitioner.needs_columns())
        train_pairs, dev_pairs, metric_names, label_names = own.train, own.dev, own.metric_names, own.label_names
        check_metric(cfg.eval.metric, cfg.stop.target_accuracy is not None, own.reported_metrics)
    else:
        train_pairs = load_glue(cfg.task.name, "train", cfg.task.data_dir)
        dev_pairs = load_glue(cfg.task.name, "dev", cfg.task.data_dir)
        metric_names = task_spec(cfg.task.name).metrics
    if cfg.task.train_limit and cfg.task.train_limit < len(train_pairs):
        keep = np.sort(numpy_rng(cfg.seed, "train-limit").permutation(len(train_pairs))[: cfg.task.train_limit])
        train_pairs = train_pairs.subset(keep)
    if cfg.task.dev_limit and cfg.task.dev_limit < len(dev_pairs):
        dev_pairs = dev_pairs.subset(range(cfg.task.dev_limit))
    tokenizer = load_tokenizer(
        cfg.model.tokenizer or cfg.model.name, None if cfg.model.tokenizer else cfg.model.gguf_file
    )
    tokenize = tokenize_fn(cfg, tokenizer)
    train = tokenize(train_pairs)
    dev = tokenize(dev_pairs)

    inputs = PartitionInputs(
        labels=train.labels,
        lengths=train.lengths,
        text_a=train_pairs.text_a,
        text_b=train_pairs.text_b,
        columns=getattr(train_pairs, "columns", None),
    )
    partitions = partitioner.split(inputs, cfg.clients.count)
    corruption = partitioner.corrupt(inputs, partitions)
    if corruption:
        train_pairs = corruption.apply(train_pairs)
        train = corruption.apply_tokenized(train, train_pairs, tokenize)
    return PreparedData(
        train_pairs,
        train,
        dev,
        partitioner,
        inputs,
        partitions,
        corruption,
        metric_names,
        cfg.seed,
        cfg.partition.name,
        label_names,
    )


def prepare(cfg: ExperimentConfig) -> Prepared:
    if cfg.training.threads:
        torch.set_num_threads(cfg.training.threads)
    data = prepare_data(cfg)
    seed_torch(cfg.seed, "model-init")  # the new classifier head (and a random_init model) are seeded
    causal = cfg.task.kind == "causal_lm"
    if causal:
        model = load_causal_lm(
            cfg.model.name,
            random_init=cfg.model.random_init,
            gguf_file=cfg.model.gguf_file,
            pad_token_id=data.train.pad_id,
            vocab_size=data.train.vocab_size,
            dtype=cfg.model.dtype,
        )
        check_token_ids(cfg, model, data.train, data.dev)
    else:
        model = load_classifier(
            cfg.model.name,
            num_labels=len(data.label_names) if data.label_names else 2,
            random_init=cfg.model.random_init,
            gguf_file=cfg.model.gguf_file,
            pad_token_id=data.train.pad_id,
            dtype=cfg.model.dtype,
            pooling=cfg.model.pooling,
        )
    targets = cfg.lora.target_modules or default_target_modules(model.config.model_type)
    host = ModelHost(
        model,
        targets,
        alpha=cfg.lora.alpha,
        dropout=cfg.lora.dropout,
        train_head=cfg.lora.train_head,
        max_rank=cfg.lora.rank,
        task_type="CAUSAL_LM" if causal else None,
        extra_trainables=tuple(trainable_modules(model, cfg.model.pooling)) if not causal else (),
    )
    train = data.train
    if causal and accepts_logits_to_keep(model):  # training needs vocabulary logits at the answer tokens only
        train = dataclasses.replace(train, tail_logits=True)
    partitions, local_val = data.partitions, None
    if cfg.eval.local_val_share > 0:
        partitions, local_val = carve_local_validation(data.partitions, cfg.eval.local_val_share, cfg.seed)
    return Prepared(cfg, host, train, data.dev, partitions, data.metric_names, data, local_val)


def check_token_ids(cfg: ExperimentConfig, model, *splits: TokenizedPrompts | TokenizedInstructions) -> None:
    """A tokenizer from elsewhere (model.tokenizer) must not produce ids beyond the model's embedding table."""
    rows = int(model.get_input_embeddings().num_embeddings)
    top = max(d.max_token_id for d in splits)
    if top >= rows:
        raise ConfigError(
            f"model.tokenizer={cfg.model.tokenizer or cfg.model.name!r} produces token id {top}, but the model "
            f"{cfg.model.name!r} embeds only {rows} ids; use the model's own tokenizer (or a larger vocab_size)"
        )


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
        lr_schedule=t.lr_schedule,
        warmup_ratio=t.warmup_ratio,
        total_versions=cfg.stop.versions,
        group_by_length=t.group_by_length,
    )


def calibrate_step_seconds(prep: Prepared, adapter, spec: LocalTrainingSpec, steps: int = 4) -> float:
    """Real seconds per local step on this machine, measured once (after one warm-up step)."""
    idx = prep.partitions[0]
    train_local(prep.host, adapter, prep.train, idx, 1, spec, client=-1, client_job=0)
    t0 = time.perf_counter()
    train_local(prep.host, adapter, prep.train, idx, steps, spec, client=-1, client_job=1)
    return (time.perf_counter() - t0) / steps


def partition_report(data: PreparedData) -> PartitionReport:
    """The per-client partition table (fedlora.partition_report), as `fedlora partition` prints it."""
    from fedlora.partition_report import build_report

    return build_report(
        data.partition_name,
        data.partitioner,
        data.inputs,
        data.partitions,
        data.corruption,
        data.seed,
        data.label_names,
    )


def partition_table(prep: Prepared) -> list[dict[str, Any]]:
    """The rows of the partition report (run.json's `partition`)."""
    if prep.data is not None:
        return partition_report(prep.data).rows
    from fedlora.partition_report import build_report

    inputs = PartitionInputs(labels=prep.train.labels, lengths=prep.train.lengths)
    return build_report(prep.cfg.partition.name, None, inputs, prep.partitions, seed=prep.cfg.seed).rows


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
        if "local" in p and p["local"].get("mean"):  # the global model on the clients' own splits
            metrics += f"  local mean {self.metric}={p['local']['mean'].get(self.metric, float('nan')):.4f}"
            metrics += f" worst={p['local']['worst'].get(self.metric, float('nan')):.4f}"
        self._progress.console.print(f"version {p['version']:>4}  virtual {p['virtual_s']:>10,.1f}s  {metrics}")
        self.update(server)


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path | None = None,
    resume: bool = False,
    on_version=None,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) one experiment; returns the summary that is also written to summary.json.

    `say` gets the notices a user should see (resuming from version N, starting fresh, falling back to the
    previous checkpoint); without it they go to the `fedlora.experiment` logger.
    """
    rd = RunDir(out if out is not None else Path(cfg.output.dir) / (cfg.output.name or default_run_name(cfg)))
    resolved = dump_config(cfg)
    notify = say or _log.info
    start = rd.open(resolved, resume, notify)
    if start == "finished":
        return rd.read_json(rd.summary)
    resuming = start == "resume"
    if cfg.task.name in OWN_DATA_TASKS:
        data = own_data_fingerprint(cfg.task)
    else:
        data = data_fingerprint(cfg.task.name, cfg.task.data_dir)
    if resuming:
        rd.check_data(data)
    if cfg.output.tensorboard:
        require_tensorboard()  # a missing package fails now, not after loading the data and the model
    # nothing is written to the run directory until everything below has validated (model width, ranks,
    # transport): a run that fails at start-up leaves no directory that would refuse the fixed config

    prep = prepare(cfg)
    host = prep.host
    spec = training_spec(cfg)
    aggregator = get_aggregator(cfg.aggregator.name, rank=cfg.lora.rank, seed=cfg.seed, **cfg.aggregator.options)
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

    record = rd.read_json(rd.run_record) if resuming and rd.run_record.is_file() else {}
    if cfg.training.step_seconds == "calibrate":
        if "step_seconds" not in record:
            record["step_seconds"] = calibrate_step_seconds(prep, initial, spec)
        step_seconds = float(record["step_seconds"])
    else:
        step_seconds = float(cfg.training.step_seconds)
    record.setdefault("step_seconds", step_seconds)
    report = partition_report(prep.data) if prep.data is not None else None
    record.setdefault("partition", report.rows if report is not None else partition_table(prep))
    record.setdefault("data", data)  # where the data came from and its fingerprint: a resume must use the same

    cost = CostModel(
        step_seconds=step_seconds,
        speeds=speeds,
        bandwidth=draw_bandwidth(cfg.clients.bandwidth, cfg.clients.count, cfg.seed),
        latency_s=cfg.clients.latency_s,
    )
    transport = make_transport(cfg, prep, spec, aggregator.freezes_A)
    evaluate_clients = None
    if prep.local_val is not None:
        transport, evaluate_clients = local_validation(cfg, prep, transport)

    def eval_global(adapter) -> dict[str, float]:
        return evaluate(host, adapter, prep.dev, cfg.eval.batch_size, prep.metric_names)

    merge_into_base, extra_state = merging(cfg, aggregator, host)

    created = not rd.path.exists()
    if not resuming:
        rd.create(resolved)
    try:
        with writing(rd.path):
            if report is not None:
                report.write(rd.path)  # partition.json, partition.md: the same table as `fedlora partition`
            record["torch_threads"] = torch.get_num_threads()
            rd.write_json(rd.run_record, record)
            state = rd.load_checkpoint(notify) if resuming else None
            if state is not None:
                notify(f"resuming from version {state['version']} (virtual t={state['clock']['now']:,.1f} s)")
            log = EventLog(rd.events, keep_lines=state["events_written"] if state else None)
            if cfg.output.tensorboard:
                log = with_tensorboard(log, rd.path, rd.events)
    except BaseException:
        if not resuming:
            rd.discard_if_unstarted(created)
        raise
    show = cfg.output.progress if progress is None else progress
    with Progress(cfg, enabled=show) as bar:
        server = server_class(cfg)(
            aggregator=aggregator,
            schedule=schedule,
            transport=transport,
            cost=cost,
            world=world,
            initial_adapter=initial,
            evaluate=eval_global,
            evaluate_clients=evaluate_clients,
            stop=StopRules(
                cfg.stop.versions,
                cfg.stop.virtual_seconds,
                cfg.stop.target_accuracy,
                cfg.stop.samples,
                target_stops=cfg.stop.stop_at_target,
            ),
            metric=cfg.eval.metric,
            eval_every_versions=cfg.eval.every_versions,
            eval_every_seconds=cfg.eval.every_seconds,
            time_budgets=cfg.eval.time_budgets,
            faults=faults(cfg),
            checkpoint_every=cfg.output.checkpoint_every,
            save_checkpoint=rd.save_checkpoint,
            record=log,
            on_progress=bar.evaluation,
            on_version=_chain(bar.update, on_version),
            merge_into_base=merge_into_base,
            extra_state=extra_state,
            max_update_norm=cfg.validation.max_update_norm,
        )
        if state is not None:
            server.load_state_dict(state)
        try:
            transport.drive(server.run)
        finally:
            log.close()
            transport.close()
    summary = server.summary()
    summary["run_dir"] = str(rd.path)
    summary["step_seconds"] = step_seconds
    if prep.local_val is not None:
        sizes = [len(v) for v in prep.local_val]
        summary["local"] = local_summary(server.history, summary["job_metrics"], cfg.eval.local_val_share, sizes)
    with writing(rd.path):
        save_adapter(rd.path / "global_adapter.safetensors", server.global_adapter, {"version": server.version})
        host.save_peft(server.global_adapter, rd.adapter_dir)
        for exported in rd.adapter_dir.glob("*.safetensors"):  # peft writes them with safetensors' mode 0600
            follow_umask(exported)
        if aggregator.merges_into_base:  # the exported adapter only makes sense on top of the merged base
            save_tensors(host.base_state(), rd.path / "merged_base_delta.safetensors")
    rd.write_json(rd.summary, summary)
    return summary


def make_transport(cfg: ExperimentConfig, prep: Prepared, spec: LocalTrainingSpec, freeze_A: bool) -> Transport:
    """WHERE clients run (transport.name); Flower is imported only when chosen."""
    if cfg.transport.name == "inprocess":
        return InProcessTransport(prep.host, prep.train, prep.partitions, spec, freeze_A=freeze_A)
    if cfg.transport.name == "flower_simulation":
        from fedlora.flower import require_flower

        require_flower()
        from fedlora.flower.simulation import FlowerSimulationTransport

        t = cfg.transport
        return FlowerSimulationTransport(
            dump_config(cfg),
            cfg.clients.count,
            workers=t.workers,
            worker_cpus=t.worker_cpus,
            job_timeout_s=t.job_timeout_s,
            wait_for_clients_s=t.wait_for_clients_s,
        )
    if cfg.transport.name == "flower_deployment":  # inside the ServerApp that `fedlora serve` starts
        from fedlora.flower import require_flower

        require_flower()
        from fedlora.flower.deploy import DeploymentTransport

        t = cfg.transport
        return DeploymentTransport.from_config(
            dump_config(cfg), cfg.clients.count, t.job_timeout_s, t.wait_for_clients_s
        )
    raise ConfigError(f"transport.name={cfg.transport.name!r} is not a transport")


def local_validation(
    cfg: ExperimentConfig, prep: Prepared, transport: Transport
) -> tuple[Transport, Callable[[Adapter], list[dict[str, float] | None]]]:
    """(transport whose results carry each job's local before/after metrics, the global model on every split).

    Both score on the clients' local validation splits (engine.local_metrics); the global model on all of
    them in one batched pass over their union.
    """
    assert prep.local_val is not None
    splits, host, bs, names = prep.local_val, prep.host, cfg.eval.batch_size, prep.metric_names

    def validate(job: Job, adapter: Adapter) -> dict[str, float]:
        idx = splits[job.client]
        return evaluate(host, adapter, prep.train, bs, names, indices=idx) if len(idx) else {}

    def evaluate_clients(adapter: Adapter) -> list[dict[str, float] | None]:
        return evaluate_groups(host, adapter, prep.train, splits, bs, names)

    return LocallyValidated(transport, validate), evaluate_clients


def server_class(cfg: ExperimentConfig) -> type[Server]:
    """The virtual-clock server, or the real-clock one (results processed on real arrival)."""
    if cfg.transport.clock == "wall":
        from fedlora.engine.wallclock import WallClockServer

        return WallClockServer
    return Server


def merging(cfg: ExperimentConfig, aggregator, host: ModelHost):
    """(merge_into_base, extra_state) for aggregators that fold every version into the base (FLoRA), else Nones.

    After each combination the update is added to the frozen base weights and clients restart from a fresh
    adapter (seeded per version, the combined head kept); the merged delta travels in checkpoints.
    """
    if not aggregator.merges_into_base:
        return None, None

    def merge_into_base(adapter, version: int):
        host.merge(adapter)
        return fresh_adapter(
            host.layer_shapes,
            cfg.lora.rank,
            cfg.lora.alpha,
            torch_generator(cfg.seed, "fresh-after-merge", version),
            extras=adapter.extras,
        )

    return merge_into_base, (host.base_state, host.load_base_state)


def faults(cfg: ExperimentConfig) -> Faults | None:
    """Client unavailability and job crashes, or None when the world has neither."""
    av = cfg.clients.availability
    if av is None and cfg.clients.failure_prob == 0:
        return None
    availability = Availability(cfg.seed, av.mean_online_s, av.mean_offline_s) if av is not None else None
    return Faults(cfg.seed, cfg.clients.failure_prob, availability)


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
