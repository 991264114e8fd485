"""No work past the stop rule: the server checks the stop rules before a step's dispatches are sent."""

from fedlora.engine.server import StopRules
from fedlora.experiment import run_experiment
from fedlora.io.rundir import read_events
from fedlora.schedules.fedavg import FedAvg, FedAvgOptions
from tests.engine.fakes import make_server, of_kind


def test_a_fedavg_run_dispatches_exactly_the_jobs_it_collects():
    events: list = []
    server = make_server(
        FedAvg(FedAvgOptions(per_round=5), 5, seed=0),
        speeds=[1, 2, 3, 1, 2],
        stop=StopRules(versions=10),
        events=events,
    )
    server.run()
    assert server.stopped_by == "versions"
    assert len(of_kind(events, "dispatch")) == len(of_kind(events, "arrival")) == 50
    assert not server.in_flight and not server.transport.pending


def test_the_samples_rule_stops_before_the_next_dispatch():
    events: list = []
    server = make_server(
        FedAvg(FedAvgOptions(per_round=2), 2, seed=0), speeds=[1, 1], stop=StopRules(samples=8), events=events
    )
    server.run()  # two jobs of 4 samples close round 1 and reach the rule: round 2 is never dispatched
    assert (server.stopped_by, server.version) == ("samples", 1)
    assert len(of_kind(events, "dispatch")) == len(of_kind(events, "arrival")) == 2
    assert not server.in_flight


def test_in_process_a_ten_round_fedavg_run_dispatches_what_returns(tiny_config, tmp_path):
    cfg = tiny_config("stop.versions=10", "clients.count=5", "schedule.per_round=5", "training.local_steps=1")
    summary = run_experiment(cfg, out=tmp_path / "run")
    events = read_events(tmp_path / "run" / "events.jsonl")
    assert len(of_kind(events, "dispatch")) == len(of_kind(events, "arrival")) == 50
    assert summary["totals"]["jobs_dispatched"] == summary["totals"]["jobs_arrived"] == 50
