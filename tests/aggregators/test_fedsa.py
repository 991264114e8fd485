"""FedSA-LoRA: A averaged and shared, each client's own B kept (per-client state) and never combined."""

import itertools

import pytest
import torch

from fedlora import get_aggregator
from fedlora.engine.transport.base import Transport
from fedlora.io.rundir import read_events
from fedlora.io.state import load_state
from fedlora.jobs import Job, JobResult
from tests.aggregators.common import SHAPES, random_adapter
from tests.conftest import run_killed


def test_a_is_averaged_and_every_client_continues_from_its_own_B():
    agg = get_aggregator("fedsa", rank=3)
    trained = [random_adapter(3, 8.0, seed=k + 1) for k in range(3)]
    terms = list(zip((0.5, 0.3, 0.2), trained, strict=True))
    glob = agg.combine(terms)
    for name in SHAPES:
        A = sum(w * ad.layers[name].A for w, ad in terms)
        torch.testing.assert_close(glob.layers[name].A, A, rtol=0, atol=1e-12)
    received = agg.distribute(glob, rank=3, alpha=8.0)
    for k, ad in enumerate(trained):
        start = agg.personalize(received, agg.keep(ad))
        for name in SHAPES:
            assert torch.equal(start.layers[name].A, received.layers[name].A)  # the shared A
            assert torch.equal(start.layers[name].B, trained[k].layers[name].B)  # its own B
        assert all(torch.equal(start.extras[h], received.extras[h]) for h in received.extras)  # the shared head
    first = agg.personalize(received, None)  # a client before its first job: B as LoRA initialises it
    assert all(not f.B.any() for f in first.layers.values())
    assert agg.personalizes and not get_aggregator("fedit", rank=3).personalizes


def test_only_A_and_the_head_are_counted_on_the_wire():
    agg = get_aggregator("fedsa", rank=2)
    start = random_adapter(2, 8.0, seed=0)
    shared = sum(f.A.numel() for f in start.layers.values()) * 8 + 6 * 8
    assert agg.upload_nbytes(start, "AB") == agg.download_nbytes(start, 0, 3) == shared < start.nbytes


# ----- end to end on the tiny model ---------------------------------------------------------------------------
FAST = ["stop.versions=4", "training.local_steps=2", "task.dev_limit=32", "training.threads=1"]
FEDSA = [
    "aggregator.name=fedsa",
    "clients.count=3",
    "schedule={name: fedbuff, buffer_size: 2}",
    "eval.local_val_share=0.2",
]


class Recording(Transport):
    """The real transport, keeping every job it was sent and every result it returned."""

    def __init__(self, inner: Transport):
        self.inner, self.jobs, self.results = inner, [], {}

    def submit(self, job: Job) -> None:
        self.jobs.append(job)
        self.inner.submit(job)

    def collect(self, job: Job) -> JobResult:
        self.results[job.job_id] = result = self.inner.collect(job)
        return result


@pytest.mark.slow
def test_each_client_trains_on_from_its_own_B_and_the_personal_models_are_evaluated(tiny_config, tmp_path, monkeypatch):
    import fedlora.experiment as experiment

    made = []
    make = experiment.make_transport
    monkeypatch.setattr(
        experiment, "make_transport", lambda *a, **kw: made.append(Recording(make(*a, **kw))) or made[-1]
    )
    summary = experiment.run_experiment(tiny_config(*FEDSA, *FAST), out=tmp_path / "run")
    rec = made[0]
    by_client = {}
    for job in sorted(rec.jobs, key=lambda j: j.job_id):
        by_client.setdefault(job.client, []).append(job)
    assert all(len(jobs) >= 2 for jobs in by_client.values())
    for jobs in by_client.values():
        assert all(not f.B.any() for f in jobs[0].start_adapter.layers.values())  # LoRA's zero B at first
        for before, after in itertools.pairwise(jobs):
            trained = rec.results[before.job_id].adapter
            for name, f in after.start_adapter.layers.items():
                assert torch.equal(f.B, trained.layers[name].B)  # its own B, bit for bit
    # the shared A: every job of one version starts from the same A, whatever its client
    by_version = {}
    for job in rec.jobs:
        A = torch.cat([f.A.flatten() for f in job.start_adapter.layers.values()])
        assert torch.equal(by_version.setdefault(job.start_version, A), A)
    point = summary["history"][-1]
    assert set(point) >= {"local", "personal"} and len(point["personal"]["clients"]["accuracy"]) == 3
    assert summary["local"]["personal"]["version"] == summary["totals"]["versions"]
    ups = [e["bytes"] for e in read_events(tmp_path / "run" / "events.jsonl") if e["event"] == "arrival"]
    assert ups and all(b < rec.jobs[0].start_adapter.nbytes for b in ups)  # B never travels


@pytest.mark.slow
def test_a_killed_fedsa_run_resumes_every_clients_B_exactly(tiny_config, tmp_path):
    from fedlora.experiment import deterministic_view, run_experiment

    cfg = tiny_config(*FEDSA, *FAST)
    straight = run_experiment(cfg, out=tmp_path / "straight")
    run_killed(cfg, tmp_path / "resumed", at_version=2)
    state = load_state(tmp_path / "resumed" / "checkpoints" / "checkpoint")
    assert state["kept"] and state["in_flight"]  # clients' own B's are in the checkpoint, jobs are out
    resumed = run_experiment(cfg, out=tmp_path / "resumed", resume=True)
    assert deterministic_view(resumed) == deterministic_view(straight)
