"""The learning rate over a whole federated run, as transformers' `get_{linear,cosine}_schedule_with_warmup`.

A run's clock is its global version: a job that starts at version v and has done s of its S steps sits at
position (v + s/S) / total_versions. Every client's optimizer is fresh per job, so the schedule is what
carries the decay across jobs, and it depends only on the job, never on who runs it or when.
"""

from __future__ import annotations

import math
from typing import Literal

LrSchedule = Literal["constant", "linear", "cosine"]


def lr_factor(progress: float, schedule: LrSchedule, warmup_ratio: float) -> float:
    """The multiplier of the base learning rate at `progress` in [0, 1] of the run."""
    p = min(max(progress, 0.0), 1.0)
    if warmup_ratio > 0 and p < warmup_ratio:
        return p / warmup_ratio
    if schedule == "constant":
        return 1.0
    q = (p - warmup_ratio) / max(1.0 - warmup_ratio, 1e-12)
    if schedule == "linear":
        return max(0.0, 1.0 - q)
    return 0.5 * (1.0 + math.cos(math.pi * q))


def job_progress(start_version: int, step: int, steps: int, total_versions: int | None) -> float:
    """Where step `step` (0-based) of a job started at `start_version` sits in the run."""
    if not total_versions:
        return 0.0
    return (start_version + step / max(steps, 1)) / total_versions
