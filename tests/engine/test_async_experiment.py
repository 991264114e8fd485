"""The asynchronous schedules and the heterogeneous world end to end on the tiny model (real training)."""

import pytest

from fedlora.experiment import deterministic_view, run_experiment
from fedlora.io.rundir import read_events
from tests.conftest import run_killed

WORLD = [
    "stop.versions=null",
    "stop.virtual_seconds=14",
    "eval.every_versions=null",
    "eval.every_seconds=3",
    "eval.time_budgets=[6, 14]",
    "clients.speeds={name: pareto, shape: 1}",
    "clients.bandwidth={scale: 1.0e+5, profile: {name: uniform, low: 0.5, high: 1.0}}",
    "clients.failure_prob=0.1",
    "clients.availability={mean_online_s: 20, mean_offline_s: 5}",
    "output.checkpoint_every=2",
]


@pytest.mark.slow
def test_fedfa_in_a_faulty_world_writes_time_metrics_and_resumes_exactly(tiny_config, tmp_path):
    cfg = tiny_config(*WORLD, "schedule={name: fedfa, window: 2}")
    full = run_experiment(cfg, out=tmp_path / "full")
    totals = full["totals"]
    assert full["stopped_by"] == "virtual_seconds" and totals["virtual_seconds"] == 14.0
    assert totals["versions"] >= 3 and totals["failed"]
    assert set(full["at_time"]) == {"6", "14"} and full["at_time"]["14"]["version"] == totals["versions"]
    assert totals["busy_fraction"] + totals["idle_fraction"] + totals["offline_fraction"] == pytest.approx(1, abs=1e-5)
    assert [p["virtual_s"] for p in full["history"]] == [0, 3, 6, 9, 12, 14]

    run_killed(cfg, tmp_path / "killed", at_version=3)
    resumed = run_experiment(cfg, out=tmp_path / "killed", resume=True)
    assert deterministic_view(resumed) == deterministic_view(full)
    strip = lambda evs: [{k: v for k, v in e.items() if k != "real_s"} for e in evs]  # noqa: E731
    assert strip(read_events(tmp_path / "killed" / "events.jsonl")) == strip(
        read_events(tmp_path / "full" / "events.jsonl")
    )


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["fedbuff", "fedasync"])
def test_the_other_async_schedules_run_from_config(tiny_config, tmp_path, schedule):
    s = run_experiment(tiny_config(*WORLD, f"schedule={{name: {schedule}}}"), out=tmp_path / schedule)
    assert s["totals"]["jobs_arrived"] > 0 and s["stopped_by"] == "virtual_seconds"
