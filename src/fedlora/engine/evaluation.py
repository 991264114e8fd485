"""What the server evaluates, and when: the evaluator protocol and the evaluation plan.

The engine never sees a model: an `Evaluator` scores adapters. `dev` is the global model on the held-out
dev set (the curve); `clients` the global model on each client's local validation split and `personal` each
client's own model there (the clients' local splits, eval.local_val_share; None: there are none). Personal
models differ from the global one only for aggregators whose clients keep state (`Aggregator.personalizes`,
FedSA-LoRA's local B). `FunctionEvaluator` makes one from plain functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from fedlora.lora.adapter import Adapter

ClientMetrics = list[dict[str, float] | None]  # per client; None: a client without a local split


class Evaluator(Protocol):
    def dev(self, adapter: Adapter) -> dict[str, float]: ...

    def clients(self, adapter: Adapter) -> ClientMetrics | None:
        """The global adapter on every client's local split; None without local splits."""
        ...

    def personal(self, adapters: Sequence[Adapter]) -> ClientMetrics | None:
        """Client c's own adapter `adapters[c]` on its local split; None without local splits."""
        ...


@dataclass(frozen=True)
class FunctionEvaluator:
    dev: Callable[[Adapter], dict[str, float]]
    clients: Callable[[Adapter], ClientMetrics | None] = lambda adapter: None
    personal: Callable[[Sequence[Adapter]], ClientMetrics | None] = lambda adapters: None


@dataclass(frozen=True)
class EvalPlan:
    """When the global model is evaluated: every N versions and/or every T virtual seconds, and at fixed
    virtual time budgets; `metric` is the one the target and the best point are judged by."""

    metric: str = "accuracy"
    every_versions: int | None = 1
    every_seconds: float | None = None
    time_budgets: tuple[float, ...] = ()
