"""Jobs and results as Flower records: adapters as ArrayRecords, job metadata as ConfigRecords.

Tensors keep the safetensors layout of `Adapter.tensors()` (`lora.<layer>.A`, `lora.<layer>.B`,
`extra.<name>`), so an ArrayRecord converts to and from a `.safetensors` file key for key. The metadata
(job id, client, rank, alpha per layer, base version, steps, sample count) travels beside it as JSON-safe
scalars, so either side can check that a reply answers the job it was sent for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedlora.lora.adapter import Adapter

ADAPTER = "adapter"
JOB = "job"
METRICS = "metrics"
RUN = "run"  # the resolved experiment config, so a worker can build the same model and training spec


def adapter_to_record(adapter: Adapter) -> ArrayRecord:
    return ArrayRecord.from_torch_state_dict({k: v.detach().contiguous() for k, v in adapter.tensors().items()})


def adapter_from_record(record: ArrayRecord, alphas: dict[str, float]) -> Adapter:
    tensors = {k: torch.from_numpy(v.numpy().copy()) for k, v in record.items()}
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
        )


def job_content(header: JobHeader, adapter: Adapter, run_config: str) -> RecordDict:
    return RecordDict(
        {
            ADAPTER: adapter_to_record(adapter),
            JOB: header.to_record(),
            RUN: ConfigRecord({"config": run_config}),
        }
    )


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


def decode_reply(content: RecordDict) -> Reply:
    job = content.config_records[JOB]
    header = JobHeader.from_record(job)
    return Reply(
        header=header,
        adapter=adapter_from_record(content.array_records[ADAPTER], header.alphas),
        num_samples=int(job["num_samples"]),
        samples_trained=int(job["samples_trained"]),
        metrics={k: float(v) for k, v in content.metric_records.get(METRICS, MetricRecord()).items()},
    )
