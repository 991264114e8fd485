"""What a Flower client process holds: one frozen base model and its own training data, built once.

A worker is built from the resolved experiment config the server sends with every job, so a SuperNode
needs no config file of its own. In simulation a node trains on its partition of the shared data (the
same partition the in-process transport uses); in deployment it trains on every row of its own data
directory. Workers are cached per process and config, so a Ray actor or SuperNode loads the model once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedlora.config import ExperimentConfig, validate_config
from fedlora.data.tokenized import TokenizedData
from fedlora.lora.adapter import Adapter
from fedlora.training.host import ModelHost
from fedlora.training.local import LocalTrainingSpec, train_local


@dataclass
class LocalWorker:
    host: ModelHost
    train: TokenizedData
    partitions: list[np.ndarray]  # rows per client (simulation), or one entry: all of this node's rows
    spec: LocalTrainingSpec
    freeze_A: bool
    own_data: bool

    def indices(self, client: int) -> np.ndarray:
        return self.partitions[0] if self.own_data else self.partitions[client]

    def run(
        self, adapter: Adapter, steps: int, client: int, client_job: int, start_version: int = 0
    ) -> tuple[Adapter, dict[str, float]]:
        """`train_local` exactly as the in-process transport calls it: same seeds, same result."""
        return train_local(
            self.host,
            adapter,
            self.train,
            self.indices(client),
            steps,
            self.spec,
            client=client,
            client_job=client_job,
            freeze_A=self.freeze_A,
            start_version=start_version,
        )


_WORKERS: dict[tuple[str, str | None], LocalWorker] = {}


def config_from_text(text: str) -> ExperimentConfig:
    import yaml

    return validate_config(yaml.safe_load(text))


def own_data_config(cfg: ExperimentConfig, data_dir: str | Path) -> ExperimentConfig:
    """The server's config pointed at one client's own data: one client, all of its rows."""
    raw = cfg.model_dump(mode="json")
    raw["task"].update(data_dir=str(data_dir), train_limit=None, dev_limit=2)
    raw["clients"] = {"count": 1}
    raw["partition"] = {"name": "iid"}
    raw["schedule"] = {"name": "fedavg"}
    raw["transport"] = {"name": "inprocess"}
    return validate_config(raw)


def worker_for(config_text: str, data_dir: str | None = None) -> LocalWorker:
    """The cached worker for this config: every partition of the shared data, or all of `data_dir`."""
    key = (hashlib.sha256(config_text.encode()).hexdigest(), data_dir)
    if key not in _WORKERS:
        from fedlora.aggregators import AGGREGATORS
        from fedlora.experiment import prepare, training_spec

        cfg = config_from_text(config_text)
        prep = prepare(own_data_config(cfg, data_dir) if data_dir else cfg)
        freeze_A = AGGREGATORS.get(cfg.aggregator.name).freezes_A
        _WORKERS.clear()  # one model per process: a new run replaces the old one
        _WORKERS[key] = LocalWorker(
            prep.host, prep.train, prep.partitions, training_spec(cfg), freeze_A, own_data=data_dir is not None
        )
    return _WORKERS[key]
