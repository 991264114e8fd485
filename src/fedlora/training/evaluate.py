"""Evaluation of an adapter on a labelled split; metrics with scikit-learn (no hub access needed).

Classification predicts the argmax of the head's logits; a causal LM (`TokenizedPrompts`) predicts the
candidate answer with the higher log-likelihood (training/causal.py) and also reports the gold answer's
perplexity.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from fedlora.data.prompts import TokenizedPrompts
from fedlora.data.tokenized import TokenizedData
from fedlora.lora.adapter import Adapter
from fedlora.training.causal import score_answers
from fedlora.training.host import ModelHost


def classification_metrics(labels: np.ndarray, preds: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    out = {"accuracy": float(accuracy_score(labels, preds))}
    if "f1" in names:
        out["f1"] = float(f1_score(labels, preds, zero_division=0.0))
    return out


@torch.no_grad()
def evaluate(
    host: ModelHost,
    adapter: Adapter,
    data: TokenizedData,
    batch_size: int,
    metric_names: tuple[str, ...] = ("accuracy",),
    indices: np.ndarray | None = None,
) -> dict[str, float]:
    host.load(adapter)
    model = host.model
    model.eval()
    idx = np.arange(len(data)) if indices is None else np.asarray(indices)
    idx = idx[np.argsort(data.lengths[idx], kind="stable")]  # similar lengths together: less padding
    if isinstance(data, TokenizedPrompts):
        return _evaluate_causal(model, data, idx, batch_size, metric_names)
    preds = np.empty(len(idx), dtype=np.int64)
    total_loss = 0.0
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        out = model(**data.batch(chunk))
        preds[start : start + len(chunk)] = out.logits.argmax(-1).numpy()
        total_loss += float(out.loss) * len(chunk)
    labels = data.labels[idx]
    metrics = classification_metrics(labels, preds, metric_names)
    metrics["loss"] = total_loss / max(len(idx), 1)
    return metrics


def _evaluate_causal(
    model, data: TokenizedPrompts, idx: np.ndarray, batch_size: int, metric_names: tuple[str, ...]
) -> dict[str, float]:
    """Predicted label = the likelier answer; loss = the gold answer's NLL per token, perplexity = exp(loss)."""
    scores = score_answers(model, data, idx, batch_size)
    metrics = classification_metrics(data.labels[idx], scores.predictions(), metric_names)
    loss = float(scores.gold_nll.sum() / max(int(scores.gold_tokens.sum()), 1))
    metrics["loss"] = loss
    metrics["perplexity"] = float(np.exp(loss))
    return metrics
