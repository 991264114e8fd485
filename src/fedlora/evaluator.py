"""The engine's evaluator on the model host: the global adapter on the dev set, and on the clients' own splits.

Each score is taken on the frozen base of the version it describes: the global model on the base with every
fold so far, a job's before/after on the base its client trained on (engine.frozen_base). Local splits
(eval.local_val_share) are carved out of the training set; without them `clients` and `personal` are None.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedlora.data.tokenized import TokenizedData
from fedlora.engine.frozen_base import FrozenBase
from fedlora.jobs import Job
from fedlora.lora.adapter import Adapter
from fedlora.training.evaluate import evaluate, evaluate_groups
from fedlora.training.host import ModelHost


class ModelEvaluator:
    def __init__(
        self,
        host: ModelHost,
        dev: TokenizedData,
        train: TokenizedData,
        local_val: list[np.ndarray] | None,
        batch_size: int,
        metric_names: tuple[str, ...],
        base: FrozenBase,
    ):
        self.host, self.dev_data, self.train, self.local_val = host, dev, train, local_val
        self.batch_size, self.metric_names, self.base = batch_size, metric_names, base

    def _on_global_base(self) -> None:
        self.host.use_base(self.base.version, self.base.current)

    def dev(self, adapter: Adapter) -> dict[str, float]:
        self._on_global_base()
        return evaluate(self.host, adapter, self.dev_data, self.batch_size, self.metric_names)

    def clients(self, adapter: Adapter) -> list[dict[str, float] | None] | None:
        """The global adapter on every client's split, in one batched pass over their union."""
        if self.local_val is None:
            return None
        self._on_global_base()
        return evaluate_groups(self.host, adapter, self.train, self.local_val, self.batch_size, self.metric_names)

    def personal(self, adapters: Sequence[Adapter]) -> list[dict[str, float] | None] | None:
        """Client c's own adapter on its own split (one pass per client: the adapters differ)."""
        if self.local_val is None:
            return None
        self._on_global_base()
        out: list[dict[str, float] | None] = []
        for adapter, idx in zip(adapters, self.local_val, strict=True):
            if not len(idx):
                out.append(None)
                continue
            out.append(evaluate(self.host, adapter, self.train, self.batch_size, self.metric_names, indices=idx))
        return out

    @property
    def validates_jobs(self) -> bool:
        return self.local_val is not None

    def validate(self, job: Job, adapter: Adapter) -> dict[str, float]:
        """An adapter of `job` on its client's split, on the base that client trained on (a job's before/after)."""
        assert self.local_val is not None
        idx = self.local_val[job.client]
        if not len(idx):
            return {}
        self.host.use_base(job.base_version, self.base.at(job.base_version))
        return evaluate(self.host, adapter, self.train, self.batch_size, self.metric_names, indices=idx)
