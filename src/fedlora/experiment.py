"""A run from a validated config: the data and model (`prepare`), a builder and a runner.

`build(cfg) -> Components` makes every part of a run (model host, aggregator, schedule, clients, cost
model, evaluator, the frozen base the aggregator may fold into) without touching a run directory or a
transport; `run(components, transport, observer)` drives the server loop on the transport the caller
brings. `run_experiment` composes them with the run directory's session (io/session.py: the resume
policy, the first writes, the results), the progress display (progress.py) and the default transport
(transports.py). This is the only place that reads the config object; everything below it gets plain
typed arguments.
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

from fedlora.aggregators import AGGREGATORS, Aggregator
from fedlora.clients.availability import Availability
from fedlora.clients.bandwidth import draw_bandwidth
from fedlora.clients.ranks import RANK_POLICIES
from fedlora.clients.speeds import draw_speeds
from fedlora.config import OWN_DATA_TASKS, ExperimentConfig, load_config
from fedlora.data.glue import TextPairs, load_glue, task_spec
from fedlora.data.instruction_tokens import TokenizedInstructions, tokenize_instructions
from fedlora.data.local_split import carve_local_validation
from fedlora.data.own_data import check_metric, load_own_data
from fedlora.data.partitioners import PARTITIONERS, Corruption, Partitioner, PartitionInputs
from fedlora.data.prompts import TokenizedPrompts, prompt_spec, tokenize_prompts
from fedlora.data.tokenized import TokenizedData, tokenize_pairs
from fedlora.engine.cost import CostModel
from fedlora.engine.evaluation import EvalPlan
from fedlora.engine.faults import Faults
from fedlora.engine.frozen_base import FrozenBase
from fedlora.engine.local_metrics import LocallyValidated, local_summary
from fedlora.engine.observer import Callbacks, Observer, Observers
from fedlora.engine.server import ClientWorld, Server, StopRules
from fedlora.engine.transport.base import Transport
from fedlora.errors import ConfigError
from fedlora.evaluator import ModelEvaluator
from fedlora.io.session import RunDirObserver, RunSession
from fedlora.io.tensorboard import require_tensorboard
from fedlora.lora.adapter import Adapter
from fedlora.lora.init import fresh_adapter
from fedlora.models.loading import default_target_modules, load_causal_lm, load_classifier, load_tokenizer
from fedlora.models.pooling import trainable_modules
from fedlora.privacy.engine import PrivacyEngine, PrivacySettings
from fedlora.privacy.plan import client_noise, privacy_settings
from fedlora.progress import Progress
from fedlora.registry import PluginContext
from fedlora.schedules import SCHEDULES, Schedule
from fedlora.seeding import numpy_rng, seed_torch, torch_generator
from fedlora.training.causal import accepts_logits_to_keep
from fedlora.training.host import ModelHost
from fedlora.training.local import LocalTrainingSpec, train_local
from fedlora.transports import make_transport

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
            num_layers=cfg.model.num_layers,
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
            num_layers=cfg.model.num_layers,
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


def plugin_context(cfg: ExperimentConfig) -> PluginContext:
    """What every plugin (aggregator, schedule, partitioner, rank policy, speed profile) is built with."""
    return PluginContext(seed=cfg.seed, num_clients=cfg.clients.count, r_max=cfg.lora.rank)


def client_world(cfg: ExperimentConfig, partitions: list[np.ndarray], speeds: np.ndarray) -> ClientWorld:
    n = cfg.clients.count
    policy = RANK_POLICIES.build(cfg.clients.ranks.name, cfg.clients.ranks.typed_options(), plugin_context(cfg))
    samples = np.array([len(p) for p in partitions])
    ranks = [int(r) for r in policy.assign(n, cfg.lora.rank, speeds, samples, cfg.seed)]
    for c, r in enumerate(ranks):
        if not 1 <= r <= cfg.lora.rank:
            raise ConfigError(f"clients.ranks: client {c} got rank {r}, outside 1..lora.rank={cfg.lora.rank}")
    if len(set(ranks)) > 1 and not AGGREGATORS.get(cfg.aggregator.name).supports_mixed_ranks:
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
        privacy=client_noise(privacy_settings(cfg)),
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


@dataclass
class Components:
    """Everything one run is made of, built from its config before anything runs: no run directory is read
    or written and no transport exists yet, so a caller may bring its own (a Flower ServerApp its Grid's)."""

    cfg: ExperimentConfig
    prep: Prepared
    spec: LocalTrainingSpec
    aggregator: Aggregator
    schedule: Schedule
    world: ClientWorld
    initial: Adapter
    cost: CostModel
    base: FrozenBase  # what the aggregator folds into the frozen base weights; shared by transport and evaluator
    evaluator: ModelEvaluator
    stop: StopRules
    plan: EvalPlan
    faults: Faults | None
    server_class: type[Server]
    step_seconds: float
    partition: list[dict[str, Any]]  # the rows of the partition table (run.json's `partition`)
    report: PartitionReport | None  # the table as `fedlora partition` writes it (None without PreparedData)
    privacy: PrivacySettings | None = None  # clipping, noise and budget (fedlora.privacy); None: off


def build(cfg: ExperimentConfig, step_seconds: float | None = None) -> Components:
    """Load the data and the model and build every part of the run from the validated config.

    `step_seconds`: the seconds per local step a resumed run measured before (training.step_seconds:
    calibrate); without it they are measured now.
    """
    privacy = privacy_settings(cfg)  # a budget the planned run would exceed refuses to start here
    prep = prepare(cfg)
    host = prep.host
    spec = training_spec(cfg)
    context = plugin_context(cfg)
    aggregator = AGGREGATORS.build(cfg.aggregator.name, cfg.aggregator.typed_options(), context)
    schedule = SCHEDULES.build(cfg.schedule.name, cfg.schedule.typed_options(), context)
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
    if cfg.training.step_seconds == "calibrate":
        step_seconds = step_seconds if step_seconds is not None else calibrate_step_seconds(prep, initial, spec)
    else:
        step_seconds = float(cfg.training.step_seconds)
    report = partition_report(prep.data) if prep.data is not None else None
    cost = CostModel(
        step_seconds=step_seconds,
        speeds=speeds,
        bandwidth=draw_bandwidth(cfg.clients.bandwidth, cfg.clients.count, cfg.seed),
        latency_s=cfg.clients.latency_s,
    )
    base = FrozenBase()
    e, s = cfg.eval, cfg.stop
    return Components(
        cfg=cfg,
        prep=prep,
        spec=spec,
        aggregator=aggregator,
        schedule=schedule,
        world=world,
        initial=initial,
        cost=cost,
        base=base,
        evaluator=ModelEvaluator(host, prep.dev, prep.train, prep.local_val, e.batch_size, prep.metric_names, base),
        stop=StopRules(s.versions, s.virtual_seconds, s.target_accuracy, s.samples, target_stops=s.stop_at_target),
        plan=EvalPlan(e.metric, e.every_versions, e.every_seconds, tuple(e.time_budgets)),
        faults=faults(cfg),
        server_class=server_class(cfg),
        step_seconds=step_seconds,
        partition=report.rows if report is not None else partition_table(prep),
        report=report,
        privacy=privacy,
    )


def run(
    components: Components,
    transport: Transport,
    observer: Observer | None = None,
    state: dict[str, Any] | None = None,
) -> Server:
    """Run the built experiment on `transport` (resumed from a checkpoint `state`) and return the server.

    The transport is the caller's: in-process, Flower's simulation, or a ServerApp's Grid. With local
    validation splits, job results are scored there before and after training (`LocallyValidated`).
    """
    c = components
    if c.evaluator.validates_jobs:
        transport = LocallyValidated(transport, c.evaluator.validate)
    server = c.server_class(
        aggregator=c.aggregator,
        schedule=c.schedule,
        transport=transport,
        cost=c.cost,
        world=c.world,
        initial_adapter=c.initial,
        evaluator=c.evaluator,
        stop=c.stop,
        plan=c.plan,
        observer=observer,
        faults=c.faults,
        max_update_norm=c.cfg.validation.max_update_norm,
        max_rejections_in_a_row=c.cfg.validation.max_rejections_in_a_row,
        base=c.base,
        privacy=privacy_engine(c),
    )
    if state is not None:
        server.load_state_dict(state)
    try:
        transport.drive(server.run)
    finally:
        transport.close()
    return server


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path | None = None,
    resume: bool = False,
    on_version: Callable[[Server], None] | None = None,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
    connect: Callable[[Components], Transport] | None = None,
) -> dict[str, Any]:
    """Run (or resume) one experiment; returns the summary that is also written to summary.json.

    `say` gets the notices a user should see (resuming from version N, starting fresh, falling back to the
    previous checkpoint); without it they go to the `fedlora.experiment` logger. `connect` builds the
    transport from the components (a Flower ServerApp passes its Grid's); by default `make_transport`.
    """
    where = out if out is not None else Path(cfg.output.dir) / (cfg.output.name or default_run_name(cfg))
    session = RunSession.open(cfg, where, resume, say or _log.info)
    if session.finished:
        return session.summary()
    if cfg.output.tensorboard:
        require_tensorboard()  # a missing package fails now, not after loading the data and the model
    # nothing is written to the run directory until everything below has validated (model width, ranks,
    # transport): a run that fails at start-up leaves no directory that would refuse the fixed config
    components = build(cfg, session.recorded_step_seconds)
    transport = connect(components) if connect is not None else make_transport(cfg, components)
    state, log = session.begin(components.step_seconds, components.partition, components.report)
    show = cfg.output.progress if progress is None else progress
    with Progress(cfg.eval.metric, cfg.stop.versions, enabled=show) as bar:
        observer = Observers(
            RunDirObserver(log, session.rd, cfg.output.checkpoint_every), bar, Callbacks(new_version=on_version)
        )
        try:
            server = run(components, transport, observer, state)
        finally:
            log.close()
    summary = server.summary()
    summary["run_dir"] = str(session.rd.path)
    summary["step_seconds"] = components.step_seconds
    local_val = components.prep.local_val
    if local_val is not None:
        sizes = [len(v) for v in local_val]
        summary["local"] = local_summary(server.history, summary["job_metrics"], cfg.eval.local_val_share, sizes)
    return session.finish(server, components.prep.host, components.base, summary)


def privacy_engine(c: Components) -> PrivacyEngine | None:
    """The server's privacy step, in the space the run's aggregator combines (None without privacy)."""
    if c.privacy is None:
        return None
    agg = c.aggregator
    return PrivacyEngine(c.privacy, agg.privacy_space, agg.rank, getattr(agg, "options", None), agg.seed)


def server_class(cfg: ExperimentConfig) -> type[Server]:
    """The virtual-clock server, or the real-clock one (results processed on real arrival)."""
    if cfg.transport.clock == "wall":
        from fedlora.engine.wallclock import WallClockServer

        return WallClockServer
    return Server


def faults(cfg: ExperimentConfig) -> Faults | None:
    """Client unavailability and job crashes, or None when the world has neither."""
    av = cfg.clients.availability
    if av is None and cfg.clients.failure_prob == 0:
        return None
    availability = Availability(cfg.seed, av.mean_online_s, av.mean_offline_s) if av is not None else None
    return Faults(cfg.seed, cfg.clients.failure_prob, availability)


def run_from_file(
    path: str | Path, overrides: list[str] | None = None, out: str | Path | None = None, resume: bool = False
) -> dict[str, Any]:
    return run_experiment(load_config(path, overrides), out=out, resume=resume)


def deterministic_view(summary: dict[str, Any]) -> str:
    """The summary without wall-clock fields: equal across reruns, parallel runs and resumes."""
    return json.dumps({k: v for k, v in summary.items() if k not in ("timing", "run_dir")}, sort_keys=True)
