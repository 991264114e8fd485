"""The 2025 methods on Flower's simulation engine give the in-process numbers exactly.

Each exercises one hook across the wire: FedEx-LoRA the frozen base a job trains on (its folds travel with
the job), FedSA-LoRA a client's own B, RoLoRA the factor a job trains, LoRA-FAIR none (a combination only).
Asynchronous (FedBuff, K=2, stale arrivals), so jobs of different versions are in flight together.
"""

from __future__ import annotations

import pytest

from fedlora.experiment import deterministic_view, run_experiment
from fedlora.io.rundir import read_events

pytest.importorskip("flwr")

ASYNC = [
    "training.threads=1",
    "clients.count=3",
    "clients.speeds={name: list, values: [1.0, 2.0, 0.5]}",
    "schedule={name: fedbuff, buffer_size: 2}",
    "stop.versions=3",
    "training.local_steps=2",
    "task.dev_limit=32",
]
METHODS = {
    "fedex": [],
    "fedsa": ["eval.local_val_share=0.2"],
    "rolora": [],
    "lorafair": [],
}


def _strip_real(events):
    return [{k: v for k, v in e.items() if k != "real_s"} for e in events]


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_method_on_flower_simulation_equals_the_in_process_run(method, tiny_config, tmp_path):
    over = [*ASYNC, f"aggregator.name={method}", *METHODS[method]]
    inproc = run_experiment(tiny_config(*over), out=tmp_path / "inprocess")
    flower = run_experiment(tiny_config(*over, "transport={name: flower_simulation, workers: 2}"), out=tmp_path / "fl")
    assert deterministic_view(flower) == deterministic_view(inproc)
    events = read_events(tmp_path / "fl" / "events.jsonl")
    assert _strip_real(events) == _strip_real(read_events(tmp_path / "inprocess" / "events.jsonl"))
    assert flower["totals"]["staleness_max"] > 0 and flower["totals"]["versions"] == 3
