"""The two own-data tasks behind one call: where the rows are (data/tabular), what they mean (a labelled
text, data/classification_task; an instruction, data/instruction).

GLUE stays on its own loader (data/glue.py); this is what `task.name: text_classification | instruction`
reads instead. Columns a partitioner asks for (by_column's owner column) are read from the training rows
only and travel with them through subsetting and corruption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedlora.data.classification_task import LabelledTexts, load_classification
from fedlora.data.instruction import InstructionColumns, InstructionExamples, load_instructions
from fedlora.data.tabular import SplitRequest, load_splits

if TYPE_CHECKING:
    from fedlora.config import TaskConfig


@dataclass(frozen=True)
class OwnData:
    train: LabelledTexts | InstructionExamples
    dev: LabelledTexts | InstructionExamples
    metric_names: tuple[str, ...]
    label_names: tuple[str, ...] | None  # text_classification: the class of each label id
    reported_metrics: tuple[str, ...] = ()  # what evaluation reports beyond loss (eval.metric may pick one)


def split_request(task: TaskConfig) -> SplitRequest:
    hub = task.hub
    return SplitRequest(
        data_dir=task.data_dir,
        hub_dataset=hub.dataset if hub else None,
        hub_config=hub.config if hub else None,
        hub_revision=hub.revision if hub else None,
        train=task.splits.train,
        dev=task.splits.dev,
        dev_share=task.splits.dev_share,
        holdout_seed=task.splits.seed,
    )


def instruction_columns(task: TaskConfig) -> InstructionColumns:
    c = task.columns
    default_input = type(c).model_fields["input"].default
    return InstructionColumns(
        instruction=c.instruction,
        input=c.input,
        input_required=c.input is not None and c.input != default_input,
        response=c.response,
        messages=c.messages,
        choices=c.choices,
    )


def load_own_data(task: TaskConfig, extra_columns: Sequence[str] = ()) -> OwnData:
    """Training and validation rows of `task` (text_classification or instruction), with their metrics."""
    train, dev = load_splits(split_request(task))
    extra = tuple(extra_columns)
    if task.name == "text_classification":
        data = load_classification(train, dev, task.columns.text, task.columns.label, task.labels, extra)
        return OwnData(data.train, data.dev, data.metric_names, data.label_names, data.metric_names)
    cols = instruction_columns(task)
    metrics = ("accuracy",) if cols.choices is not None else ()  # choice accuracy; loss and perplexity always
    reported = (*metrics, "exact_match") if task.exact_match_tokens > 0 else metrics
    return OwnData(load_instructions(train, cols, extra), load_instructions(dev, cols), metrics, None, reported)


def own_data_fingerprint(task: TaskConfig) -> dict[str, str | None]:
    """Source and SHA-256 of the task's files, for run.json (a resume must read the same data)."""
    from fedlora.data.tabular import fingerprint

    return fingerprint(split_request(task))


def check_metric(metric: str, has_target: bool, reported: Sequence[str]) -> None:
    """eval.metric must be one the task reports when it decides something (a target, or a chosen best).

    The default (accuracy) on an instruction task without choices is let through: such a task reports loss
    and perplexity only, and its runs are read off the validation loss of the history.
    """
    if metric in reported or (metric == "accuracy" and not has_target):
        return
    from fedlora.errors import ConfigError

    have = ", ".join([*reported, "loss"])
    hint = " (f1 is binary F1, for two classes: use macro_f1)" if metric == "f1" else ""
    fix = "set eval.metric to one it reports" + (", or remove stop.target_accuracy" if has_target else "")
    raise ConfigError(f"eval.metric={metric}: this task reports {have}{hint}; {fix}")
