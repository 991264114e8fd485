"""Jobs and results as Flower records: adapters as ArrayRecords, job metadata as ConfigRecords.

Tensors keep the safetensors layout of `Adapter.tensors()` (`lora.<layer>.A`, `lora.<layer>.B`,
`extra.<name>`), so an ArrayRecord converts to and from a `.safetensors` file key for key. The metadata
(job id, client, rank, alpha per layer, start version, steps, the factors to train, the frozen base's
version; in a reply the sample counts) travels beside it as JSON-safe scalars in the message's
ConfigRecord, so either side can check that a reply answers the job it was sent for. A train message also
carries the client spec (`flower.spec`) and, once the aggregator folded into the frozen base, that base.

A reply is untrusted bytes: `decode_reply` turns anything it cannot read (a missing record, bad JSON, an A
without its B, a non-numeric count) into `UpdateRejected("malformed")`, and with the job it answers it
checks the arrays' declared names, shapes, dtypes and sizes against that job before reading any of them
(`engine.validation.check_declared`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedlora.engine.validation import check_declared
from fedlora.errors import UpdateRejected
from fedlora.jobs import Job
from fedlora.lora.adapter import Adapter

ADAPTER = "adapter"
BASE = "base"  # what was folded into the frozen base weights by the job's dispatch (float64 per layer)
JOB = "job"  # the job's own values (JobHeader), and in a reply its counts
METRICS = "metrics"
SPEC = "spec"  # what the client needs to build its model and data (flower.spec.ClientSpec), as JSON


def adapter_to_record(adapter: Adapter) -> ArrayRecord:
    return ArrayRecord.from_torch_state_dict({k: v.detach().contiguous() for k, v in adapter.tensors().items()})


def adapter_from_record(record: ArrayRecord, alphas: dict[str, float], job: Job | None = None) -> Adapter:
    """The adapter in `record`; with the `job` it answers, only after its declared arrays fit that job.

    Each array is also checked to hold what it declared (shape and dtype), since the declaration and the
    serialized bytes are separate fields of the message.
    """
    if job is not None:
        declared = {k: (tuple(v.shape), str(v.dtype), len(v.data)) for k, v in record.items()}
        check_declared(job, declared)
    tensors = {}
    for key, array in record.items():
        data = array.numpy()
        if tuple(data.shape) != tuple(array.shape) or str(data.dtype) != str(array.dtype):
            raise ValueError(f"array {key} holds a {data.dtype} {data.shape}, declared {array.dtype} {array.shape}")
        tensors[key] = torch.from_numpy(data.copy())
    return Adapter.from_tensors(tensors, alphas)


@dataclass(frozen=True)
class JobHeader:
    """What a client needs to know about a job besides the adapter, and what its reply must echo."""

    job_id: int
    client: int
    client_job: int
    rank: int
    start_version: int
    steps: int
    alphas: dict[str, float]
    trains: str = "AB"  # the factors the client trains (the aggregator's trains hook)
    base_version: int = 0  # the folds into the frozen base the client trains on (sent in BASE when > 0)

    def to_record(self) -> ConfigRecord:
        return ConfigRecord(
            {
                "job_id": self.job_id,
                "client": self.client,
                "client_job": self.client_job,
                "rank": self.rank,
                "start_version": self.start_version,
                "steps": self.steps,
                "alphas": json.dumps(self.alphas, sort_keys=True),
                "trains": self.trains,
                "base_version": self.base_version,
            }
        )

    @classmethod
    def from_record(cls, record: ConfigRecord) -> JobHeader:
        return cls(
            job_id=int(record["job_id"]),
            client=int(record["client"]),
            client_job=int(record["client_job"]),
            rank=int(record["rank"]),
            start_version=int(record["start_version"]),
            steps=int(record["steps"]),
            alphas={k: float(v) for k, v in json.loads(str(record["alphas"])).items()},
            trains=str(record["trains"]) if "trains" in record else "AB",
            base_version=int(record["base_version"]) if "base_version" in record else 0,
        )


def job_content(
    header: JobHeader, adapter: Adapter, spec: str, base: dict[str, torch.Tensor] | None = None
) -> RecordDict:
    """A train message: the start adapter, the job's values, the client spec and, after folds, the base."""
    content = RecordDict(
        {
            ADAPTER: adapter_to_record(adapter),
            JOB: header.to_record(),
            SPEC: ConfigRecord({"spec": spec}),
        }
    )
    if base:
        content[BASE] = ArrayRecord.from_torch_state_dict({k: v.contiguous() for k, v in base.items()})
    return content


def base_from_content(content: RecordDict) -> dict[str, torch.Tensor]:
    """The frozen-base deltas a train message carries ({} before any fold)."""
    if BASE not in content.array_records:
        return {}
    return {k: torch.from_numpy(a.numpy().copy()) for k, a in content.array_records[BASE].items()}


@dataclass(frozen=True)
class Reply:
    """A decoded train reply: the echoed header, the trained adapter and the client's numbers."""

    header: JobHeader
    adapter: Adapter
    num_samples: int
    samples_trained: int
    metrics: dict[str, float]


def reply_content(
    header: JobHeader, adapter: Adapter, num_samples: int, samples_trained: int, metrics: dict[str, float]
) -> RecordDict:
    job = header.to_record()
    job["num_samples"] = int(num_samples)
    job["samples_trained"] = int(samples_trained)
    return RecordDict(
        {
            ADAPTER: adapter_to_record(adapter),
            JOB: job,
            METRICS: MetricRecord({k: float(v) for k, v in metrics.items()}),
        }
    )


@dataclass(frozen=True)
class ReplyMeta:
    """Everything of a reply but its arrays: what is checked before any array is read."""

    header: JobHeader
    num_samples: int
    samples_trained: int
    metrics: dict[str, float]


def decode_meta(content: RecordDict, job: Job | None = None) -> ReplyMeta:
    """The reply's header, counts and metrics; `UpdateRejected("malformed")` if any of them cannot be read."""
    try:
        record = content.config_records[JOB]
        meta = ReplyMeta(
            header=JobHeader.from_record(record),
            num_samples=int(record["num_samples"]),
            samples_trained=int(record["samples_trained"]),
            metrics={k: float(v) for k, v in content.metric_records.get(METRICS, MetricRecord()).items()},
        )
    except Exception as exc:  # a reply is untrusted: any decoding failure is the client's, never the server's
        raise _malformed(job, exc) from None
    if meta.num_samples < 1 or meta.samples_trained < 0:
        raise _malformed(job, ValueError(f"num_samples={meta.num_samples}, samples_trained={meta.samples_trained}"))
    return meta


def decode_reply(content: RecordDict, job: Job | None = None) -> Reply:
    """The whole reply; with the `job` it answers, its arrays are checked against that job before being read."""
    meta = decode_meta(content, job)
    try:
        adapter = adapter_from_record(content.array_records[ADAPTER], meta.header.alphas, job)
    except UpdateRejected:
        raise
    except Exception as exc:
        raise _malformed(job, exc) from None
    return Reply(meta.header, adapter, meta.num_samples, meta.samples_trained, meta.metrics)


def _malformed(job: Job | None, exc: BaseException) -> UpdateRejected:
    who = f"client {job.client}, job {job.job_id}" if job is not None else "a reply"
    return UpdateRejected("malformed", f"{who}: the reply cannot be decoded ({type(exc).__name__}: {exc})")
