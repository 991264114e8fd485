"""What a Flower client is told about the run: a small spec, not the server's whole experiment.

A client needs the model, the LoRA settings, the local-training options and its own data: nothing of the
schedule, the aggregator, the stop rules, evaluation, the transport or the run directory. The spec travels
with each train message (Flower's simulation has no per-run client config) as one JSON string in its own
ConfigRecord, beside the job's own values (`codec.JobHeader`). The `data` part says where the client's rows
come from: in simulation its partition of the shared data (task, partitioner, client count, seed and local
validation share fix it, exactly as the server computes it); a deployed client reads all the rows of its own
data directory instead (`experiment_config(data_dir=...)`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fedlora.config import ExperimentConfig, validate_config


@dataclass(frozen=True)
class ClientSpec:
    seed: int
    model: dict[str, Any]
    lora: dict[str, Any]
    training: dict[str, Any]  # the local-training options (lr, batch size, schedule over the run...)
    total_versions: int | None  # the learning-rate schedule's clock (stop.versions)
    task: dict[str, Any]  # how to load and tokenise the data
    partition: dict[str, Any]  # simulation: how the shared data is split among...
    clients: int  # ...this many clients
    local_val_share: float  # the share of each partition held out (never trained on)
    # privacy.where: client: the clip and the (solved) noise multiplier the client applies itself; else None
    privacy: dict[str, Any] | None = None

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> ClientSpec:
        dumped = cfg.model_dump(mode="json")
        return cls(
            seed=cfg.seed,
            model=dumped["model"],
            lora=dumped["lora"],
            training=dumped["training"],
            total_versions=cfg.stop.versions,
            task=dumped["task"],
            partition=dumped["partition"],
            clients=cfg.clients.count,
            local_val_share=cfg.eval.local_val_share,
            privacy=client_privacy(cfg),
        )

    def to_text(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> ClientSpec:
        return cls(**json.loads(text))

    def experiment_config(self, data_dir: str | None = None) -> ExperimentConfig:
        """The config `prepare` builds the client's model and data from; with `data_dir`, one client that
        trains on the rows there (a deployed client's own data, less any local validation share; the dev
        split is a token two rows)."""
        raw: dict[str, Any] = {
            "seed": self.seed,
            "model": self.model,
            "lora": self.lora,
            "training": self.training,
            "stop": {"versions": self.total_versions},
            "task": dict(self.task),
            "partition": self.partition,
            "clients": {"count": self.clients},
            "eval": {"local_val_share": self.local_val_share},
        }
        if self.privacy is not None:
            raw["privacy"] = dict(self.privacy)
        if data_dir is not None:
            raw["task"].update(data_dir=str(data_dir), train_limit=None, dev_limit=2)
            raw.update(clients={"count": 1}, partition={"name": "iid"})
        return validate_config(raw)


def client_privacy(cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The privacy section a client needs under client-side noise: its clip and the noise multiplier, solved
    by the server when the config gives a target epsilon (the client never sees the budget or the schedule)."""
    if cfg.privacy is None or cfg.privacy.where != "client":
        return None
    from fedlora.privacy.plan import privacy_settings

    s = privacy_settings(cfg)
    assert s is not None
    return {"clip_norm": s.clip_norm, "noise_multiplier": s.noise_multiplier, "delta": s.delta, "where": "client"}
