"""Local versus global metrics end to end on the tiny models: held-out splits, summary.json, resume, decoders."""

import numpy as np
import pytest

from fedlora.config import load_config
from fedlora.experiment import deterministic_view, prepare, run_experiment
from fedlora.io.rundir import read_events

from .conftest import REPO, run_killed

LOCAL = ["eval.local_val_share=0.25", "training.threads=1"]


def test_the_local_split_is_carved_from_each_partition_and_not_trained_on(tiny_config):
    prep = prepare(tiny_config(*LOCAL))
    assert prep.local_val is not None and prep.data is not None
    for full, train, val in zip(prep.data.partitions, prep.partitions, prep.local_val, strict=True):
        assert len(val) == round(0.25 * len(full)) and not set(train) & set(val)
        assert np.array_equal(np.sort(np.concatenate([train, val])), full)
    assert prepare(tiny_config()).local_val is None  # off by default


def test_summary_carries_the_final_local_block_and_the_jobs_before_and_after(tiny_config, tmp_path):
    s = run_experiment(tiny_config(*LOCAL), out=tmp_path / "run")
    local = s["local"]
    assert local["share"] == 0.25 and len(local["examples"]) == 4
    final = local["final"]
    assert final["version"] == s["totals"]["versions"]
    acc = final["clients"]["accuracy"]
    assert len(acc) == 4 and final["worst"]["accuracy"] == min(acc)
    assert final["spread"]["accuracy"] == pytest.approx(max(acc) - min(acc), abs=1e-6)
    assert final["mean"]["loss"] == pytest.approx(np.mean(final["clients"]["loss"]), abs=1e-6)
    jobs = local["jobs"]
    assert {"train_loss", "local_accuracy_before", "local_accuracy_after", "local_loss_gain"} <= set(jobs)
    arrivals = [e for e in read_events(tmp_path / "run" / "events.jsonl") if e["event"] == "arrival"]
    assert len(arrivals) == s["totals"]["jobs_arrived"]
    assert all({"train_loss", "local_loss_before", "local_loss_after"} <= set(a) for a in arrivals)
    assert jobs["local_loss_before"] == pytest.approx(np.mean([a["local_loss_before"] for a in arrivals]), abs=1e-5)
    # the global model on the dev set is unchanged by measuring locally (the training data shrank, though)
    assert set(s["final"]["metrics"]) == {"accuracy", "f1", "loss"}


def test_a_killed_run_with_local_metrics_resumes_to_the_same_numbers(tiny_config, tmp_path):
    cfg = tiny_config(*LOCAL, "stop.versions=3", "schedule={name: fedbuff, buffer_size: 2, concurrency: 3}")
    full = run_experiment(cfg, out=tmp_path / "full")

    run_killed(cfg, tmp_path / "killed", at_version=2)
    resumed = run_experiment(cfg, out=tmp_path / "killed", resume=True)
    assert deterministic_view(resumed) == deterministic_view(full)
    assert resumed["local"]["final"]["clients"] == full["local"]["final"]["clients"]


def test_local_metrics_on_a_decoder_report_perplexity_before_and_after(glue_dir, tmp_path):
    cfg = load_config(
        REPO / "configs" / "decoder" / "tiny_llama.yaml",
        [f"task.data_dir={glue_dir}", "output.progress=false", *LOCAL, "schedule={name: fedfa, window: 2}"],
    )
    s = run_experiment(cfg, out=tmp_path / "llama")
    assert {"accuracy", "loss", "perplexity"} <= set(s["local"]["final"]["mean"])
    assert s["local"]["final"]["worst"]["perplexity"] == max(s["local"]["final"]["clients"]["perplexity"])
    assert s["local"]["jobs"]["local_perplexity_after"] > 1
