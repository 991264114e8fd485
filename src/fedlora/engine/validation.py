"""Server-side checks of a client update before it may touch the global model.

A rejected update is counted under its reason in summary.json and logged in events.jsonl; it is never
silently used. The checks are the same for every transport. Nothing a client sends is trusted beyond what
the job fixes: the layer set, each layer's (d_out, d_in), a rank of at most the job's, the dtypes and the
alphas of the adapter the job was sent. A transport that decodes bytes checks the declared shapes and
dtypes first (`check_declared`), so a reply cannot make the server allocate more than the job's rank implies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

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
    sent = job.start_adapter
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
        given = sent.layers.get(name, ref)
        # the scale (alpha/r) B A is the server's to set: a client's alpha (NaN, 1e30, 0, negative) would
        # rescale its update at will (`!=` holds for NaN too)
        if f.alpha != given.alpha:
            raise UpdateRejected(
                "wrong_alpha", f"client {job.client}, layer {name}: alpha {f.alpha!r}, the job was sent {given.alpha!r}"
            )
        for which, t, expected in (("A", f.A, given.A), ("B", f.B, given.B)):
            if t.dtype != expected.dtype:
                raise UpdateRejected(
                    "wrong_dtype", f"client {job.client}, layer {name}.{which}: {t.dtype}, expected {expected.dtype}"
                )
            if not torch.isfinite(t).all():
                raise UpdateRejected("non_finite", f"client {job.client}, layer {name}: NaN or Inf in the update")
        sq += float(f.delta(torch.float64).square().sum()) if max_norm is not None else 0.0
    for name, t in adapter.extras.items():
        ref_t = reference.extras[name]
        if t.shape != ref_t.shape:
            raise UpdateRejected("wrong_shape", f"client {job.client}, {name}: shape {tuple(t.shape)}")
        expected_dtype = sent.extras[name].dtype if name in sent.extras else ref_t.dtype
        if t.dtype != expected_dtype:
            raise UpdateRejected("wrong_dtype", f"client {job.client}, {name}: {t.dtype}, expected {expected_dtype}")
        if not torch.isfinite(t).all():
            raise UpdateRejected("non_finite", f"client {job.client}, {name}: NaN or Inf in the update")
    norm = math.sqrt(sq)
    if max_norm is not None and not norm <= max_norm:  # NaN-safe: a NaN norm is never within the bound
        raise UpdateRejected("over_norm", f"client {job.client}: update norm {norm:.3g} > bound {max_norm}")


#: bytes a serialized array may take beyond its data (the .npy header Flower's arrays carry)
ARRAY_HEADER_BYTES = 4096


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32: the name numpy and Flower's arrays use."""
    return str(dtype).removeprefix("torch.")


def max_reply_nbytes(job: Job) -> int:
    """The most bytes an honest reply to `job` can take: every layer at the job's rank, plus the extras."""
    total = 0
    for f in job.start_adapter.layers.values():
        total += (f.d_out * job.rank * f.B.element_size()) + (job.rank * f.d_in * f.A.element_size())
    total += sum(t.numel() * t.element_size() for t in job.start_adapter.extras.values())
    return total + ARRAY_HEADER_BYTES * len(job.start_adapter.tensors())


def check_declared(job: Job, declared: Mapping[str, tuple[tuple[int, ...], str, int]]) -> None:
    """Raise `UpdateRejected` unless a reply's arrays, as declared, can answer `job`; before any is read.

    `declared` maps each array's name (the `Adapter.tensors()` layout) to (shape, dtype name, bytes on the
    wire). Checked: the total size against `max_reply_nbytes` (`oversized`), the names (`malformed`: an A
    without its B, a name of no kind), the layer set (`wrong_layers`), dtypes (`wrong_dtype`), ranks
    (`over_rank`) and shapes (`wrong_shape`), and each array's bytes against its declared shape.
    """
    who = f"client {job.client}"
    total = sum(n for _, _, n in declared.values())
    if total > max_reply_nbytes(job):
        raise UpdateRejected(
            "oversized",
            f"{who}: reply of {total} bytes, a rank-{job.rank} answer takes at most {max_reply_nbytes(job)}",
        )
    factors: dict[str, set[str]] = {}
    for key in declared:
        kind, _, rest = key.partition(".")
        name, _, which = rest.rpartition(".")
        if kind == "lora" and name and which in ("A", "B"):
            factors.setdefault(name, set()).add(which)
        elif kind != "extra" or not rest:
            raise UpdateRejected("malformed", f"{who}: unexpected array {key!r} in the reply")
    for name, parts in sorted(factors.items()):
        if parts != {"A", "B"}:
            (have,) = parts
            raise UpdateRejected("malformed", f"{who}, layer {name}: {have} without {'B' if have == 'A' else 'A'}")
    expected = job.start_adapter.tensors()
    if set(declared) != set(expected):
        diff = sorted(set(declared) ^ set(expected))[:3]
        raise UpdateRejected("wrong_layers", f"{who}: arrays differ from the model's (e.g. {diff})")
    for key, (shape, dtype, _) in declared.items():
        ref = expected[key]
        if dtype != dtype_name(ref.dtype):
            raise UpdateRejected("wrong_dtype", f"{who}, {key}: {dtype}, expected {dtype_name(ref.dtype)}")
        if len(shape) != ref.ndim or any(not isinstance(d, int) or d < 0 for d in shape):
            raise UpdateRejected("wrong_shape", f"{who}, {key}: shape {tuple(shape)}")
    for name in sorted(factors):
        (r_a, d_in), (d_out, r_b) = declared[f"lora.{name}.A"][0], declared[f"lora.{name}.B"][0]
        ref = job.start_adapter.layers[name]
        if r_a != r_b:
            raise UpdateRejected("wrong_shape", f"{who}, layer {name}: A has rank {r_a}, B has rank {r_b}")
        if r_a > job.rank:
            raise UpdateRejected("over_rank", f"{who}, layer {name}: rank {r_a} > assigned {job.rank}")
        if (d_out, d_in) != (ref.d_out, ref.d_in):
            raise UpdateRejected(
                "wrong_shape",
                f"{who}, layer {name}: (d_out, d_in)=({d_out}, {d_in}), expected ({ref.d_out}, {ref.d_in})",
            )
    for key, (shape, _, nbytes) in declared.items():
        ref = expected[key]
        if key.startswith("extra.") and tuple(shape) != tuple(ref.shape):
            raise UpdateRejected("wrong_shape", f"{who}, {key}: shape {tuple(shape)}, expected {tuple(ref.shape)}")
        if nbytes > math.prod(shape) * ref.element_size() + ARRAY_HEADER_BYTES:
            raise UpdateRejected(
                "oversized", f"{who}, {key}: {nbytes} bytes for a {tuple(shape)} {dtype_name(ref.dtype)}"
            )


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
