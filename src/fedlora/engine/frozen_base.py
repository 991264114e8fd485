"""Updates folded into the frozen base weights, version by version (FLoRA's merges, FedEx-LoRA's residuals).

An aggregator folds through its `after_combine` hook (`fold(deltas)`); every fold makes a new cumulative
snapshot, one float64 d_out x d_in sum per layer, so a rebuilt base is original + snapshot exactly, bit for
bit, in any process. A job trains on the base as it was when the job was dispatched (`Job.base_version`): a
real client downloads the folds when it syncs and trains on that copy while the server folds on. That is
what makes an asynchronous run the same on every transport (in-process trains a job late, Flower at once)
and after a resume, so the snapshots that jobs in flight still need are kept, and checkpointed, until they
end; the others are dropped. A run that never folds holds one empty snapshot and costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

F64 = torch.float64


class FrozenBase:
    def __init__(self) -> None:
        self.version = 0  # folds so far
        self._snapshots: dict[int, dict[str, Tensor]] = {0: {}}

    def fold(self, deltas: Mapping[str, Tensor]) -> None:
        """Add one dense update per layer; the sum is kept in float64 (as the model host applies it)."""
        current = self._snapshots[self.version]
        new = dict(current)
        for name, delta in deltas.items():
            d = delta.to(F64)
            new[name] = d if name not in current else current[name] + d
        self.version += 1
        self._snapshots[self.version] = new

    @property
    def current(self) -> dict[str, Tensor]:
        return self._snapshots[self.version]

    def at(self, version: int) -> dict[str, Tensor]:
        """The folded sum after `version` folds; kept for as long as a job in flight trains on it."""
        try:
            return self._snapshots[version]
        except KeyError:
            raise KeyError(f"the frozen base after {version} folds is no longer kept (now {self.version})") from None

    def keep_only(self, versions: Iterable[int]) -> None:
        """Drop every snapshot but the current one and those of `versions` (the jobs in flight)."""
        keep = {self.version, *versions}
        for v in [v for v in self._snapshots if v not in keep]:
            del self._snapshots[v]

    def state_dict(self) -> dict[str, Any]:
        return {"version": self.version, "snapshots": {str(v): dict(s) for v, s in sorted(self._snapshots.items())}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "snapshots" not in state:  # a checkpoint written before snapshots: the merged sum per layer only
            self.version, self._snapshots = 0, {0: {k: t.to(F64) for k, t in state.items()}}
            return
        self.version = int(state["version"])
        self._snapshots = {int(v): {k: t.to(F64) for k, t in s.items()} for v, s in state["snapshots"].items()}
