"""A transport wrapper that turns chosen jobs' results into attacks or crashes: fault injection for any transport.

Each attack is a generic transformation of a real result (any adapter shapes), so the same wrapper serves
the exact fake world and real training runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch

from fedlora.engine.transport.base import JobFailed, Transport
from fedlora.errors import UpdateRejected
from fedlora.jobs import Job, JobResult
from fedlora.lora.adapter import Adapter, LoRAFactors


def _each_layer(adapter: Adapter, fn: Callable[[LoRAFactors], LoRAFactors]) -> Adapter:
    return Adapter(layers={n: fn(f) for n, f in adapter.layers.items()}, extras=dict(adapter.extras))


def nan(adapter: Adapter) -> Adapter:
    return adapter.map(lambda t: torch.full_like(t, float("nan")))


def inf(adapter: Adapter) -> Adapter:
    return _each_layer(adapter, lambda f: LoRAFactors(f.A, torch.full_like(f.B, float("inf")), f.alpha))


def wrong_shape(adapter: Adapter) -> Adapter:
    """One more input column in every layer: d_in no longer matches the model."""
    return _each_layer(adapter, lambda f: LoRAFactors(torch.cat([f.A, torch.zeros_like(f.A[:, :1])], 1), f.B, f.alpha))


def over_rank(adapter: Adapter) -> Adapter:
    """Rank + 1 in every layer: above what the job assigned."""
    return _each_layer(
        adapter,
        lambda f: LoRAFactors(
            torch.cat([f.A, torch.zeros_like(f.A[:1])], 0), torch.cat([f.B, torch.zeros_like(f.B[:, :1])], 1), f.alpha
        ),
    )


def wrong_layers(adapter: Adapter) -> Adapter:
    """One layer missing."""
    first = next(iter(adapter.layers))
    return Adapter(layers={n: f for n, f in adapter.layers.items() if n != first}, extras=dict(adapter.extras))


def over_norm(adapter: Adapter) -> Adapter:
    """Finite, right shapes, but a huge update (B shifted by 1e3)."""
    return _each_layer(adapter, lambda f: LoRAFactors(f.A, f.B + 1e3, f.alpha))


def with_alpha(value: float) -> Callable[[Adapter], Adapter]:
    """The update unchanged, but claiming another alpha: its effective scale (alpha/r) B A is then the client's."""
    return lambda adapter: _each_layer(adapter, lambda f: LoRAFactors(f.A, f.B, value))


def wrong_dtype(adapter: Adapter) -> Adapter:
    """The same numbers in another float dtype than the job was sent."""
    return adapter.map(lambda t: t.to(torch.float16 if t.dtype != torch.float16 else torch.float32))


def under_rank(adapter: Adapter) -> Adapter:
    """One rank fewer in every layer: valid on its own, but an equal-rank aggregator (fedit) cannot combine it."""
    return _each_layer(adapter, lambda f: LoRAFactors(f.A[:-1], f.B[:, :-1], f.alpha))


ADAPTER_ATTACKS: dict[str, Callable[[Adapter], Adapter]] = {
    "nan": nan,
    "inf": inf,
    "wrong_shape": wrong_shape,
    "over_rank": over_rank,
    "wrong_layers": wrong_layers,
    "over_norm": over_norm,
    "alpha_nan": with_alpha(float("nan")),
    "alpha_inf": with_alpha(float("inf")),
    "alpha_huge": with_alpha(1e30),
    "alpha_negative": with_alpha(-8.0),
    "alpha_zero": with_alpha(0.0),
    "wrong_dtype": wrong_dtype,
    "under_rank": under_rank,
}
EXPECTED_REASON = {
    "nan": "non_finite",
    "inf": "non_finite",
    "wrong_shape": "wrong_shape",
    "over_rank": "over_rank",
    "wrong_layers": "wrong_layers",
    "over_norm": "over_norm",
    "duplicate": "duplicate",
    "unsolicited": "unsolicited",
    "alpha_nan": "wrong_alpha",
    "alpha_inf": "wrong_alpha",
    "alpha_huge": "wrong_alpha",
    "alpha_negative": "wrong_alpha",
    "alpha_zero": "wrong_alpha",
    "wrong_dtype": "wrong_dtype",
    "malformed": "malformed",
}


class MaliciousTransport(Transport):
    """Delivers the inner transport's results, except for the jobs in `attacks` (job id -> attack name).

    `duplicate` replays the previous result delivered; `unsolicited` hands over the genuine result under
    another client's name; `crash` raises `JobFailed(job, "crash")` as a client dying mid-job would;
    `malformed` raises `UpdateRejected("malformed")` as a transport does for a reply it cannot decode.
    """

    def __init__(self, inner: Transport, attacks: Mapping[int, str]):
        self.inner = inner
        self.attacks = dict(attacks)
        self.applied: list[tuple[int, str]] = []
        self._last: JobResult | None = None

    def submit(self, job: Job) -> None:
        self.inner.submit(job)

    def drive(self, run: Callable[[], None]) -> None:
        self.inner.drive(run)

    def collect(self, job: Job) -> JobResult:
        result = self.inner.collect(job)
        attack = self.attacks.get(job.job_id)
        if attack is None:
            self._last = result
            return result
        self.applied.append((job.job_id, attack))
        if attack == "crash":
            raise JobFailed(job, "crash")
        if attack == "malformed":
            raise UpdateRejected("malformed", f"client {job.client}, job {job.job_id}: the reply cannot be decoded")
        if attack == "duplicate":
            assert self._last is not None, "a duplicate needs an earlier result to replay"
            return self._last
        if attack == "unsolicited":
            other = dataclasses.replace(job, client=job.client + 1)
            return dataclasses.replace(result, job=other)
        return dataclasses.replace(result, adapter=ADAPTER_ATTACKS[attack](result.adapter))
