"""In-process transport: every simulated client trains on the one shared frozen base model.

Training happens lazily, when the server collects the job: the result depends only on the job, so
computing it late (or again, after a resume) gives identical numbers. That includes the base weights: the
job trains on the base as it was at dispatch (`Job.base_version`, kept by `engine.frozen_base`), not as
later folds left it.

With `batch_jobs` on (`transport.batch_jobs: auto | N`), collecting a job trains it together with the other
submitted, not yet collected jobs on the same frozen base (`training.batched`: one stacked pass over the
base per step, each row through its own client's adapter); the others' results wait here until the server
collects them. Which jobs share a batch is fixed by the job ids pending, so a run is deterministic; a job's
result equals its sequential one up to float rounding (docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedlora.data.tokenized import TokenizedData
from fedlora.engine.frozen_base import FrozenBase
from fedlora.engine.transport.base import Transport
from fedlora.jobs import Job, JobResult
from fedlora.training.batched import BatchJob, train_batched
from fedlora.training.host import ModelHost
from fedlora.training.local import LocalTrainingSpec, train_local


class InProcessTransport(Transport):
    def __init__(
        self,
        host: ModelHost,
        train: TokenizedData,
        partitions: Sequence[np.ndarray],
        spec: LocalTrainingSpec,
        base: FrozenBase | None = None,
        batch_jobs: str | int = "off",
    ):
        self.host = host
        self.train = train
        self.partitions = partitions
        self.spec = spec
        self.base = base if base is not None else FrozenBase()
        self._pending: dict[int, Job] = {}
        self.batch_jobs = batch_jobs
        self._done: dict[int, JobResult] = {}  # trained in an earlier batch, not yet collected
        self.batches: list[int] = []  # the size of every batch trained (for benchmarks and tests)

    def submit(self, job: Job) -> None:
        self._pending[job.job_id] = job
        self._done.pop(job.job_id, None)  # resubmitted (a resume): train it again

    def collect(self, job: Job) -> JobResult:
        self._pending.pop(job.job_id, None)
        if job.job_id in self._done:
            return self._done.pop(job.job_id)
        if self.batch_jobs != "off":
            return self._collect_batched(job)
        indices = self.partitions[job.client]
        self.host.use_base(job.base_version, self.base.at(job.base_version))
        adapter, metrics = train_local(
            self.host,
            job.start_adapter,
            self.train,
            indices,
            job.steps,
            self.spec,
            client=job.client,
            client_job=job.client_job,
            trains=job.trains,
            start_version=job.start_version,
        )
        return JobResult(
            job=job,
            adapter=adapter,
            num_samples=len(indices),
            samples_trained=job.steps * self.spec.batch_size,
            metrics=metrics,
        )

    def _collect_batched(self, job: Job) -> JobResult:
        limit = None if self.batch_jobs == "auto" else int(self.batch_jobs)
        others = [
            j
            for _, j in sorted(self._pending.items())
            if j.base_version == job.base_version and j.job_id not in self._done
        ]
        group = [job, *others][:limit]
        self.host.use_base(job.base_version, self.base.at(job.base_version))
        trained = train_batched(
            self.host,
            [
                BatchJob(
                    j.start_adapter,
                    self.partitions[j.client],
                    j.steps,
                    j.client,
                    j.client_job,
                    j.trains,
                    j.start_version,
                )
                for j in group
            ],
            self.train,
            self.spec,
        )
        self.batches.append(len(group))
        results = {}
        for j, (adapter, metrics) in zip(group, trained, strict=True):
            results[j.job_id] = JobResult(
                job=j,
                adapter=adapter,
                num_samples=len(self.partitions[j.client]),
                samples_trained=j.steps * self.spec.batch_size,
                metrics=metrics,
            )
        for j in group[1:]:
            self._done[j.job_id] = results[j.job_id]
        return results[job.job_id]
