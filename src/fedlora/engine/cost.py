"""The job cost model: a job's virtual duration, never the noisy real timer.

duration = steps * step_seconds / speed + (bytes_down + bytes_up) / bandwidth + latency
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CostModel:
    step_seconds: float
    speeds: np.ndarray
    bandwidth: np.ndarray
    latency_s: float

    def duration(self, client: int, steps: int, bytes_down: int, bytes_up: int) -> float:
        compute = steps * self.step_seconds / float(self.speeds[client])
        transfer = (bytes_down + bytes_up) / float(self.bandwidth[client])
        return compute + transfer + self.latency_s
