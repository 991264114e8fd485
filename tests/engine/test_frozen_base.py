"""The frozen base: what aggregators fold into the base weights, kept per version for the jobs in flight."""

import pytest
import torch

from fedlora.engine.frozen_base import FrozenBase

F64 = torch.float64


def test_the_frozen_base_keeps_only_what_jobs_in_flight_need_and_checkpoints_it():
    base = FrozenBase()
    d = {"l": torch.ones(2, 2, dtype=F64)}
    base.fold(d)
    base.fold(d)
    base.fold(d)
    base.keep_only([1])  # a job dispatched after the first fold is still out
    assert base.version == 3 and float(base.at(1)["l"][0, 0]) == 1.0 and float(base.current["l"][0, 0]) == 3.0
    with pytest.raises(KeyError, match="no longer kept"):
        base.at(2)
    restored = FrozenBase()
    restored.load_state_dict(base.state_dict())
    assert restored.version == 3 and torch.equal(restored.at(1)["l"], base.at(1)["l"])
    old = FrozenBase()
    old.load_state_dict({"l": torch.full((2, 2), 2.0, dtype=F64)})  # a checkpoint of before snapshots
    assert old.version == 0 and float(old.current["l"][1, 1]) == 2.0
