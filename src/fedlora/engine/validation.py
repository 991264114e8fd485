"""Server-side checks of a client update before it may touch the global model.

A rejected update is counted under its reason in summary.json and logged in events.jsonl; it is never
silently used. The checks are the same for every transport.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from fedlora.errors import UpdateRejected
from fedlora.jobs import Job
from fedlora.lora.adapter import Adapter


def validate_update(job: Job, adapter: Adapter, reference: Adapter, max_norm: float | None = None) -> None:
    """Raise `UpdateRejected(reason, message)` unless `adapter` is a sane answer to `job`."""
    if set(adapter.layers) != set(reference.layers):
        diff = sorted(set(adapter.layers) ^ set(reference.layers))[:3]
        raise UpdateRejected("wrong_layers", f"client {job.client}: layer set differs from the model's (e.g. {diff})")
    if set(adapter.extras) != set(reference.extras):
        raise UpdateRejected("wrong_layers", f"client {job.client}: extra trainables differ from the model's")
    sq = 0.0
    for name, f in adapter.layers.items():
        ref = reference.layers[name]
        if f.rank > job.rank:
            raise UpdateRejected("over_rank", f"client {job.client}, layer {name}: rank {f.rank} > assigned {job.rank}")
        if (f.d_out, f.d_in) != (ref.d_out, ref.d_in):
            raise UpdateRejected(
                "wrong_shape",
                f"client {job.client}, layer {name}: (d_out, d_in)=({f.d_out}, {f.d_in}), "
                f"expected ({ref.d_out}, {ref.d_in})",
            )
        for t in (f.A, f.B):
            if not torch.isfinite(t).all():
                raise UpdateRejected("non_finite", f"client {job.client}, layer {name}: NaN or Inf in the update")
        sq += float(f.delta(torch.float64).square().sum()) if max_norm is not None else 0.0
    for name, t in adapter.extras.items():
        if t.shape != reference.extras[name].shape:
            raise UpdateRejected("wrong_shape", f"client {job.client}, {name}: shape {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise UpdateRejected("non_finite", f"client {job.client}, {name}: NaN or Inf in the update")
    if max_norm is not None and math.sqrt(sq) > max_norm:
        raise UpdateRejected("over_norm", f"client {job.client}: update norm {math.sqrt(sq):.3g} > bound {max_norm}")


def check_provenance(job: Job, claimed: Job, in_flight: Iterable[int], next_job_id: int) -> None:
    """Raise `UpdateRejected` unless a result answers `job`: the job the server dispatched to that client.

    `claimed` is the job the result says it answers. A claim for a job that was dispatched and has already
    ended is a replay (`duplicate`); any other mismatch (a job in flight elsewhere, a job never dispatched,
    another client) is `unsolicited`.
    """
    if (claimed.job_id, claimed.client) == (job.job_id, job.client):
        return
    if 0 <= claimed.job_id < next_job_id and claimed.job_id != job.job_id and claimed.job_id not in set(in_flight):
        raise UpdateRejected("duplicate", f"client {claimed.client}: result for job {claimed.job_id}, already ended")
    raise UpdateRejected(
        "unsolicited",
        f"result claims job {claimed.job_id} of client {claimed.client}, but job {job.job_id} went to client "
        f"{job.client}",
    )
