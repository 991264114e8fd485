"""Local LoRA training of one job: a fresh optimizer, seeded dropout and batch order, fixed step count.

Every random draw is derived from (seed, client, client_job), so the result depends only on the job,
never on which process runs it or when.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fedlora.data.tokenized import TokenizedData
from fedlora.lora.adapter import Adapter
from fedlora.seeding import numpy_rng, seed_torch
from fedlora.training.host import ModelHost


@dataclass(frozen=True)
class LocalTrainingSpec:
    batch_size: int
    lr: float
    head_lr: float | None
    weight_decay: float
    max_grad_norm: float | None
    seed: int


def batch_order(indices: np.ndarray, steps: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`steps` batches drawn epoch by epoch (reshuffled each pass) from the client's examples."""
    need = steps * batch_size
    passes = math.ceil(need / max(len(indices), 1))
    order = np.concatenate([rng.permutation(indices) for _ in range(passes)])[:need]
    if len(indices) < batch_size:  # tiny clients: every batch is the whole client
        return [rng.permutation(indices) for _ in range(steps)]
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def train_local(
    host: ModelHost,
    adapter: Adapter,
    data: TokenizedData,
    indices: np.ndarray,
    steps: int,
    spec: LocalTrainingSpec,
    client: int,
    client_job: int,
    freeze_A: bool = False,
) -> tuple[Adapter, dict[str, float]]:
    slot = host.load(adapter)
    lora_params, head_params = host.trainable(slot, freeze_A=freeze_A)
    groups = [{"params": lora_params, "lr": spec.lr}]
    if head_params:
        groups.append({"params": head_params, "lr": spec.head_lr or spec.lr})
    optimizer = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay)
    params = lora_params + head_params
    seed_torch(spec.seed, "dropout", client, client_job)
    batches = batch_order(indices, steps, spec.batch_size, numpy_rng(spec.seed, "batches", client, client_job))
    model = host.model
    model.train()
    losses = []
    for idx in batches:
        out = model(**data.batch(idx))
        loss = out.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if spec.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    metrics = {
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "train_loss_first": losses[0] if losses else float("nan"),
        "train_loss_last": losses[-1] if losses else float("nan"),
    }
    return host.extract(slot), metrics
