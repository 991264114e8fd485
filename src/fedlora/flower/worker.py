"""What a Flower client process holds: one frozen base model and its own training data, built once.

A worker is built from the client spec every job carries (`flower.spec.ClientSpec`: model, LoRA, training
options, where its data comes from), so a SuperNode needs no config file of its own and never sees the
server's schedule, aggregator or run directory. In simulation a node trains on its partition of the shared
data (the same partition the in-process transport uses); in deployment it trains on the rows of its own
data directory. Workers are cached per process and spec, so a Ray actor or SuperNode loads the model once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from fedlora.data.tokenized import TokenizedData
from fedlora.flower.spec import ClientSpec
from fedlora.jobs import Trains
from fedlora.lora.adapter import Adapter
from fedlora.training.host import ModelHost
from fedlora.training.local import LocalTrainingSpec, train_local


@dataclass
class LocalWorker:
    host: ModelHost
    train: TokenizedData
    partitions: list[np.ndarray]  # rows per client (simulation), or one entry: all of this node's rows
    spec: LocalTrainingSpec
    own_data: bool

    def indices(self, client: int) -> np.ndarray:
        return self.partitions[0] if self.own_data else self.partitions[client]

    def run(
        self,
        adapter: Adapter,
        steps: int,
        client: int,
        client_job: int,
        start_version: int = 0,
        trains: Trains = "AB",
        base: tuple[int, dict[str, torch.Tensor]] = (0, {}),
    ) -> tuple[Adapter, dict[str, float]]:
        """`train_local` exactly as the in-process transport calls it, on the same frozen base (`base`:
        (folds, their float64 sum per layer)): same seeds, same result."""
        self.host.use_base(*base)
        return train_local(
            self.host,
            adapter,
            self.train,
            self.indices(client),
            steps,
            self.spec,
            client=client,
            client_job=client_job,
            trains=trains,
            start_version=start_version,
        )


_WORKERS: dict[tuple[str, str | None], LocalWorker] = {}


def worker_for(spec_text: str, data_dir: str | None = None) -> LocalWorker:
    """The cached worker for this spec: every partition of the shared data, or all of `data_dir`."""
    key = (hashlib.sha256(spec_text.encode()).hexdigest(), data_dir)
    if key not in _WORKERS:
        from fedlora.experiment import prepare, training_spec

        cfg = ClientSpec.from_text(spec_text).experiment_config(data_dir)
        prep = prepare(cfg)
        _WORKERS.clear()  # one model per process: a new run replaces the old one
        _WORKERS[key] = LocalWorker(
            prep.host, prep.train, prep.partitions, training_spec(cfg), own_data=data_dir is not None
        )
    return _WORKERS[key]
