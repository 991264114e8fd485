"""Local versus global metrics: how the global model does on each client's own data, and what a job did there.

Why both: a non-IID factor can hurt the global model on the population (the global dev set) and the
clients on their own distributions differently; CLLoRA's finding is that context-quality skew hurts both
while context-length skew barely changes local training. Each client holds a local validation split
(`data.local_split`), never trained on.

- Global on local: at every evaluation point the server scores the global adapter on every client's split
  (one batched pass over their union, `training.evaluate.evaluate_groups`) and reports each client's
  metrics plus their mean, worst client, spread (max - min) and standard deviation (`client_spread`).
- Before/after: each job reports its client's metrics of the adapter it received and of the adapter it
  trained, on that client's split (`LOCAL_JOB_KEYS`). A transport whose clients measure themselves puts
  these in the result's metrics; `LocallyValidated` computes them in-process for one that does not.

Cost: global-on-local is one forward pass over share x training examples per evaluation point (with
share 0.1 about as many examples as a GLUE dev set); before/after are two forward passes over the client's
split per job, against steps x batch_size forward and backward passes of training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from fedlora.engine.transport.base import Transport
from fedlora.jobs import Job, JobResult
from fedlora.lora.adapter import Adapter

HIGHER_IS_BETTER = frozenset({"accuracy", "f1"})  # the rest (loss, perplexity): lower is better
BEFORE, AFTER = "before", "after"


def local_job_key(metric: str, when: str) -> str:
    """The name of a job's local validation metric, e.g. local_accuracy_before."""
    return f"local_{metric}_{when}"


def worst(metric: str, values: Sequence[float]) -> float:
    return float(min(values) if metric in HIGHER_IS_BETTER else max(values))


def client_spread(per_client: Sequence[dict[str, float] | None]) -> dict[str, dict[str, float]]:
    """{"mean"|"worst"|"spread"|"std": {metric: value}} over the clients that have a split (None: no split)."""
    present = [m for m in per_client if m is not None]
    if not present:
        return {}
    names = [k for k in present[0] if all(k in m for m in present)]
    out: dict[str, dict[str, float]] = {"mean": {}, "worst": {}, "spread": {}, "std": {}}
    for name in names:
        values = np.array([m[name] for m in present], dtype=float)
        out["mean"][name] = float(values.mean())
        out["worst"][name] = worst(name, values)
        out["spread"][name] = float(values.max() - values.min())
        out["std"][name] = float(values.std())
    return out


def local_block(per_client: Sequence[dict[str, float] | None], digits: int = 6) -> dict[str, object]:
    """The global model on every client's split: per-client columns ({metric: [value or None per client]})
    and the stats over clients, rounded, as an evaluation point and summary.json carry them."""
    stats = client_spread(per_client)
    names = list(stats.get("mean", {}))
    clients = {n: [None if m is None else round(float(m[n]), digits) for m in per_client] for n in names}
    rounded = {k: {n: round(v, digits) for n, v in d.items()} for k, d in stats.items()}
    return {"clients": clients, **rounded}


def job_before_after(means: dict[str, float]) -> dict[str, float]:
    """From the mean job metrics (Server.summary's job_metrics): the local before/after numbers and the gains.

    gain = after - before for every metric with both (for loss and perplexity a negative gain is good).
    """
    out = {k: v for k, v in means.items() if k.startswith("local_") or k.startswith("train_loss")}
    for key, before in list(out.items()):
        if key.endswith(f"_{BEFORE}"):
            metric = key[len("local_") : -len(f"_{BEFORE}")]
            after = out.get(local_job_key(metric, AFTER))
            if after is not None and math.isfinite(before) and math.isfinite(after):
                out[f"local_{metric}_gain"] = after - before
    return out


class LocallyValidated(Transport):
    """A transport whose job results also carry the client's local before/after metrics.

    `validate(job, trained)` returns {metric: value} of an adapter on the job's client split, for the
    received adapter (`job.start_adapter`) and the trained one. Results that already carry the metrics (a
    client that measured itself) pass through unchanged. Evaluation draws no random numbers and leaves no
    state behind but the adapter slot's contents, which every job overwrites: numbers stay deterministic.
    """

    def __init__(self, inner: Transport, validate: Callable[[Job, Adapter], dict[str, float]]):
        self.inner = inner
        self.validate = validate

    def submit(self, job: Job) -> None:
        self.inner.submit(job)

    def collect(self, job: Job) -> JobResult:
        result = self.inner.collect(job)
        if any(k.startswith("local_") and k.endswith(f"_{AFTER}") for k in result.metrics):
            return result
        before = self.validate(job, job.start_adapter)
        after = self.validate(job, result.adapter)
        extra = {local_job_key(k, BEFORE): v for k, v in before.items()}
        extra.update({local_job_key(k, AFTER): v for k, v in after.items()})
        return dataclasses.replace(result, metrics={**result.metrics, **extra})

    def drive(self, run: Callable[[], None]) -> None:
        self.inner.drive(run)

    def __getattr__(self, name: str):
        """Everything else (a real-arrival transport's `poll` and `overdue`) is the inner transport's."""
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.close()


def local_summary(
    history: Sequence[dict[str, object]], job_means: dict[str, float], share: float, examples: Sequence[int]
) -> dict[str, object]:
    """summary.json's `local`: the last local evaluation of the global model and the jobs' before/after means;
    with clients that keep state (FedSA-LoRA), `personal`: the last evaluation of each client's own model."""
    last = next((p for p in reversed(history) if "local" in p), None)
    final = {"version": last["version"], **last["local"]} if last is not None else None  # type: ignore[dict-item]
    out = {
        "share": share,
        "examples": [int(n) for n in examples],
        "final": final,
        "jobs": {k: round(v, 6) for k, v in job_before_after(job_means).items()},
    }
    own = next((p for p in reversed(history) if "personal" in p), None)
    if own is not None:
        out["personal"] = {"version": own["version"], **own["personal"]}  # type: ignore[dict-item]
    return out
