"""Local versus global metrics on the fake world: stats over clients, before/after per job, summary means."""

import math

import pytest

from fedlora.engine.local_metrics import LocallyValidated, client_spread, job_before_after, local_block
from fedlora.engine.server import StopRules
from fedlora.jobs import JobResult
from fedlora.schedules.fedavg import FedAvg, FedAvgOptions
from fedlora.schedules.fedbuff import FedBuff, FedBuffOptions
from tests.engine.fakes import FakeTransport, make_server, num, of_kind


def test_stats_over_clients_take_the_worst_in_the_metrics_direction_and_skip_clients_without_a_split():
    per_client = [
        {"accuracy": 0.5, "loss": 0.75},
        None,
        {"accuracy": 1.0, "loss": 0.25},
        {"accuracy": 0.75, "loss": 0.5},
    ]
    stats = client_spread(per_client)
    assert stats["mean"] == {"accuracy": 0.75, "loss": 0.5}
    assert stats["worst"] == {"accuracy": 0.5, "loss": 0.75}  # lowest accuracy, highest loss
    assert stats["spread"] == {"accuracy": 0.5, "loss": 0.5}
    assert stats["std"]["accuracy"] == pytest.approx(math.sqrt(((0.25**2) * 2) / 3))
    block = local_block(per_client)
    assert block["clients"] == {"accuracy": [0.5, None, 1.0, 0.75], "loss": [0.75, None, 0.25, 0.5]}
    assert client_spread([None, None]) == {}


def test_gains_are_after_minus_before_for_every_metric_with_both():
    means = {"local_accuracy_before": 0.5, "local_accuracy_after": 0.75, "local_loss_before": 0.5, "train_loss": 1.0}
    out = job_before_after(means)
    assert out["local_accuracy_gain"] == 0.25 and out["train_loss"] == 1.0
    assert "local_loss_gain" not in out  # no "after": no gain


def number_on_split(job, adapter):
    """The fake client's local metric: the number an adapter stands for, offset by its client id."""
    return {"accuracy": num(adapter) + job.client}


@pytest.mark.parametrize(
    "schedule",
    [lambda: FedAvg(FedAvgOptions(per_round=3), 3, seed=0), lambda: FedBuff(FedBuffOptions(buffer_size=2), 3, seed=0)],
    ids=["fedavg", "fedbuff"],
)
def test_every_evaluation_scores_each_client_split_and_every_job_reports_before_and_after(schedule):
    events: list[dict] = []
    calls = []

    def on_splits(adapter):
        calls.append(num(adapter))
        return [{"accuracy": num(adapter) + c} for c in range(3)]

    inner = FakeTransport()
    server = make_server(
        schedule(),
        speeds=[1.0, 2.0, 4.0],
        transport=inner,
        stop=StopRules(versions=3),
        events=events,
        evaluate_clients=on_splits,
    )
    server.transport = LocallyValidated(inner, number_on_split)
    server.run()
    evaluations = [e for e in of_kind(events, "evaluation") if not e.get("reused")]
    assert len(calls) == len(evaluations) == 4  # versions 0..3, each once
    for e, g in zip(evaluations, calls, strict=True):
        assert e["local"]["clients"]["accuracy"] == [pytest.approx(g + c) for c in range(3)]
        assert e["local"]["worst"]["accuracy"] == pytest.approx(g) and e["local"]["spread"]["accuracy"] == 2
    assert all("local" in p for p in server.history if not p.get("reused"))
    arrivals = of_kind(events, "arrival")
    for a in arrivals:  # the fake client adds client + 1 to the number it received
        assert a["local_accuracy_after"] - a["local_accuracy_before"] == pytest.approx(a["client"] + 1)
    means = server.summary()["job_metrics"]
    gain = sum(a["client"] + 1 for a in arrivals) / len(arrivals)
    assert means["local_accuracy_after"] - means["local_accuracy_before"] == pytest.approx(gain)


def test_a_result_that_already_carries_local_metrics_passes_through_unchanged():
    class SelfMeasuring(FakeTransport):
        def collect(self, job):
            r = super().collect(job)
            return JobResult(r.job, r.adapter, r.num_samples, r.samples_trained, {"local_accuracy_after": -1.0})

    def never(job, adapter):
        raise AssertionError("the client measured itself")

    inner = SelfMeasuring()
    server = make_server(FedAvg(FedAvgOptions(), 2, seed=0), speeds=[1.0, 1.0], transport=inner)
    server.transport = LocallyValidated(inner, never)
    server.run()
    assert server.summary()["job_metrics"]["local_accuracy_after"] == -1.0


def test_the_wrapper_passes_a_real_arrival_transports_poll_and_overdue_through():
    class Arrivals(FakeTransport):
        def poll(self):
            return [3, 1]

        def overdue(self):
            return [7]

    wrapped = LocallyValidated(Arrivals(), number_on_split)
    assert wrapped.poll() == [3, 1] and wrapped.overdue() == [7]
    plain = LocallyValidated(FakeTransport(), number_on_split)
    assert not callable(getattr(plain, "poll", None))  # the wall-clock server's check still refuses it
