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
from fedlora.jobs import Trains
from fedlora.lora.adapter import Adapter
from fedlora.privacy.client import ClientNoise, privatize
from fedlora.seeding import numpy_rng, seed_torch
from fedlora.training.host import ModelHost
from fedlora.training.lr_schedule import LrSchedule, job_progress, lr_factor


@dataclass(frozen=True)
class LocalTrainingSpec:
    batch_size: int
    lr: float
    head_lr: float | None
    weight_decay: float
    max_grad_norm: float | None
    seed: int
    lr_schedule: LrSchedule = "constant"
    warmup_ratio: float = 0.0
    total_versions: int | None = None  # the run's length in versions: the clock of the learning-rate schedule
    group_by_length: bool = False
    privacy: ClientNoise | None = None  # privacy.where: client: clip and noise the update before it leaves


def group_batches_by_length(
    batches: list[np.ndarray], lengths: np.ndarray, rng: np.random.Generator, group: int = 50
) -> list[np.ndarray]:
    """Regroup drawn batches so each holds examples of similar length (less padding), as transformers'
    LengthGroupedSampler: within each run of `group` batches, sort the examples by length, cut them into
    batches again and shuffle those batches. Which examples a job sees is unchanged."""
    out: list[np.ndarray] = []
    for start in range(0, len(batches), group):
        chunk = batches[start : start + group]
        flat = np.concatenate(chunk)
        flat = flat[np.argsort(-lengths[flat], kind="stable")]
        sizes = np.cumsum([len(b) for b in chunk])[:-1]
        regrouped = np.split(flat, sizes)
        out += [regrouped[i] for i in rng.permutation(len(regrouped))]
    return out


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
    trains: Trains = "AB",
    start_version: int = 0,
) -> tuple[Adapter, dict[str, float]]:
    """Train `adapter` for `steps` batches of the client's `indices`; `trains` names the LoRA factors that
    move (the job's, from the aggregator's `trains` hook), `start_version` places the job in the run's
    learning-rate schedule."""
    slot = host.load(adapter)
    lora_params, head_params = host.trainable(slot, trains)
    groups = [{"params": lora_params, "lr": spec.lr}]
    if head_params:
        groups.append({"params": head_params, "lr": spec.head_lr or spec.lr})
    optimizer = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay)
    params = lora_params + head_params
    seed_torch(spec.seed, "dropout", client, client_job)
    batches = batch_order(indices, steps, spec.batch_size, numpy_rng(spec.seed, "batches", client, client_job))
    if spec.group_by_length:
        rng = numpy_rng(spec.seed, "length-groups", client, client_job)
        batches = group_batches_by_length(batches, data.lengths, rng)
    base_lrs = [g["lr"] for g in groups]
    model = host.model
    model.train()
    losses = []
    for step, idx in enumerate(batches):
        factor = lr_factor(
            job_progress(start_version, step, steps, spec.total_versions), spec.lr_schedule, spec.warmup_ratio
        )
        for g, base in zip(optimizer.param_groups, base_lrs, strict=True):
            g["lr"] = base * factor
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
    trained = host.extract(slot)
    if spec.privacy is not None:  # on the client, before anything leaves it (docs/privacy.md)
        trained, _ = privatize(trained, adapter, trains, spec.privacy, client, client_job)
    return trained, metrics
