"""Evaluation of an adapter on a labelled split; metrics with scikit-learn (no hub access needed).

Classification predicts the argmax of the head's logits; a causal LM (`TokenizedPrompts`) predicts the
candidate answer with the higher log-likelihood (training/causal.py) and also reports the gold answer's
perplexity. An instruction task (`TokenizedInstructions`) reports the response loss and perplexity, exact
match for short references and choice accuracy where rows list choices (training/response_scores.py).

Scoring is per example (`score_examples`), metrics are computed over any subset of the scored examples
(`metrics_of`): so one batched pass over the union of many clients' local splits gives every client's
metrics (`evaluate_groups`), instead of one short, poorly batched pass per client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score

from fedlora.data.instruction_tokens import TokenizedInstructions
from fedlora.data.prompts import TokenizedPrompts
from fedlora.data.tokenized import TokenizedData
from fedlora.lora.adapter import Adapter
from fedlora.training.causal import score_answers
from fedlora.training.host import ModelHost
from fedlora.training.response_scores import score_responses


@dataclass(frozen=True)
class ExampleScores:
    """Per scored example: its index, gold label, prediction, and its loss as a sum over a count.

    Classification: the cross-entropy of the example over a count of 1. Causal LM: the gold answer's NLL
    summed over its tokens, over the token count, so a subset's loss is the per-token NLL of its answers.
    """

    indices: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    loss_sum: np.ndarray
    loss_count: np.ndarray
    causal: bool
    # per-example values whose mean over a subset is a metric (instruction exact match); NaN = not counted
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def positions(self, subset: np.ndarray) -> np.ndarray:
        """Where the examples `subset` sit among the scored ones (each must have been scored)."""
        order = np.argsort(self.indices, kind="stable")
        return order[np.searchsorted(self.indices[order], np.asarray(subset, dtype=np.int64))]


def classification_metrics(labels: np.ndarray, preds: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    out = {"accuracy": float(accuracy_score(labels, preds))} if "accuracy" in names else {}
    if "f1" in names:
        out["f1"] = float(f1_score(labels, preds, zero_division=0.0))
    if "macro_f1" in names:
        out["macro_f1"] = float(f1_score(labels, preds, average="macro", zero_division=0.0))
    return out


@torch.no_grad()
def score_examples(
    host: ModelHost, adapter: Adapter, data: TokenizedData, batch_size: int, indices: np.ndarray | None = None
) -> ExampleScores:
    host.load(adapter)
    model = host.model
    model.eval()
    idx = np.arange(len(data)) if indices is None else np.asarray(indices, dtype=np.int64)
    idx = idx[np.argsort(data.lengths[idx], kind="stable")]  # similar lengths together: less padding
    labels = data.labels[idx]
    if isinstance(data, TokenizedPrompts):
        scores = score_answers(model, data, idx, batch_size)
        return ExampleScores(idx, labels, scores.predictions(), scores.gold_nll, scores.gold_tokens, causal=True)
    if isinstance(data, TokenizedInstructions):
        r = score_responses(model, data, idx, batch_size)
        extra = {"exact_match": r.exact_match}
        return ExampleScores(idx, labels, r.predictions, r.gold_nll, r.gold_tokens, causal=True, extra=extra)
    preds = np.empty(len(idx), dtype=np.int64)
    losses = np.empty(len(idx), dtype=np.float64)
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        batch = data.batch(chunk)
        gold = batch.pop("labels")
        logits = model(**batch).logits
        preds[start : start + len(chunk)] = logits.argmax(-1).numpy()
        losses[start : start + len(chunk)] = F.cross_entropy(logits.float(), gold, reduction="none").double().numpy()
    return ExampleScores(idx, labels, preds, losses, np.ones(len(idx), dtype=np.int64), causal=False)


def metrics_of(
    scores: ExampleScores, metric_names: tuple[str, ...], subset: np.ndarray | None = None
) -> dict[str, float]:
    """Metrics over the scored examples, or over the examples `subset` of them; causal LMs add perplexity."""
    at = slice(None) if subset is None else scores.positions(subset)
    metrics = classification_metrics(scores.labels[at], scores.preds[at], metric_names)
    loss = float(scores.loss_sum[at].sum() / max(int(scores.loss_count[at].sum()), 1))
    metrics["loss"] = loss
    if scores.causal:
        metrics["perplexity"] = float(np.exp(loss))
    for name, values in scores.extra.items():
        counted = values[at][~np.isnan(values[at])]
        if len(counted):
            metrics[name] = float(counted.mean())
    return metrics


def evaluate(
    host: ModelHost,
    adapter: Adapter,
    data: TokenizedData,
    batch_size: int,
    metric_names: tuple[str, ...] = ("accuracy",),
    indices: np.ndarray | None = None,
) -> dict[str, float]:
    return metrics_of(score_examples(host, adapter, data, batch_size, indices), metric_names)


def evaluate_groups(
    host: ModelHost,
    adapter: Adapter,
    data: TokenizedData,
    groups: Sequence[np.ndarray],
    batch_size: int,
    metric_names: tuple[str, ...] = ("accuracy",),
) -> list[dict[str, float] | None]:
    """The metrics of one adapter on each group of examples (None for an empty group), in one batched pass."""
    nonempty = [np.asarray(g, dtype=np.int64) for g in groups if len(g)]
    if not nonempty:
        return [None] * len(groups)
    scores = score_examples(host, adapter, data, batch_size, np.unique(np.concatenate(nonempty)))
    return [metrics_of(scores, metric_names, np.asarray(g)) if len(g) else None for g in groups]
