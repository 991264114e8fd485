"""In-process transport: every simulated client trains on the one shared frozen base model.

Training happens lazily, when the server collects the job: the result depends only on the job, so
computing it late (or again, after a resume) gives identical numbers. That includes the base weights: the
job trains on the base as it was at dispatch (`Job.base_version`, kept by `engine.frozen_base`), not as
later folds left it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedlora.data.tokenized import TokenizedData
from fedlora.engine.frozen_base import FrozenBase
from fedlora.engine.transport.base import Transport
from fedlora.jobs import Job, JobResult
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
    ):
        self.host = host
        self.train = train
        self.partitions = partitions
        self.spec = spec
        self.base = base if base is not None else FrozenBase()
        self._pending: dict[int, Job] = {}

    def submit(self, job: Job) -> None:
        self._pending[job.job_id] = job

    def collect(self, job: Job) -> JobResult:
        self._pending.pop(job.job_id, None)
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
