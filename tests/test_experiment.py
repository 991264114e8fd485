"""End-to-end runs of the tiny config: determinism, resume, run directory contents, CLI."""

import json

import pytest
import torch
from typer.testing import CliRunner

from fedlora.cli import app
from fedlora.errors import ConfigError
from fedlora.experiment import deterministic_view, run_experiment
from fedlora.io.rundir import read_events
from tests.conftest import run_killed


def test_same_config_and_seed_give_identical_summaries(tiny_config, tmp_path):
    a = run_experiment(tiny_config(), out=tmp_path / "a")
    b = run_experiment(tiny_config(), out=tmp_path / "b")
    assert deterministic_view(a) == deterministic_view(b)
    assert a["totals"]["versions"] == 3
    assert len(a["history"]) == 4  # version 0 and every version after
    c = run_experiment(tiny_config("seed=1"), out=tmp_path / "c")
    assert deterministic_view(c) != deterministic_view(a)


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_numbers(tiny_config, tmp_path):
    cfg = tiny_config("stop.versions=4", "schedule.per_round=2")
    full = run_experiment(cfg, out=tmp_path / "full")

    run_killed(cfg, tmp_path / "killed", at_version=2)
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = run_experiment(cfg, out=tmp_path / "killed", resume=True)
    assert deterministic_view(resumed) == deterministic_view(full)
    # the event log is cut back to the checkpoint and continued, not duplicated
    strip = lambda evs: [{k: v for k, v in e.items() if k != "real_s"} for e in evs]  # noqa: E731
    assert strip(read_events(tmp_path / "killed" / "events.jsonl")) == strip(
        read_events(tmp_path / "full" / "events.jsonl")
    )


def test_run_directory_holds_config_events_summary_checkpoint_and_peft_adapter(tiny_config, tmp_path):
    from peft import PeftModel

    from fedlora.models.loading import load_classifier

    summary = run_experiment(tiny_config(), out=tmp_path / "run")
    run = tmp_path / "run"
    for name in (
        "config.yaml",
        "events.jsonl",
        "summary.json",
        "run.json",
        "global_adapter.safetensors",
        "checkpoints/checkpoint/state.json",
        "adapter/adapter_config.json",
    ):
        assert (run / name).exists(), name
    kinds = {e["event"] for e in read_events(run / "events.jsonl")}
    assert {"dispatch", "arrival", "aggregation", "evaluation", "checkpoint"} <= kinds
    for e in read_events(run / "events.jsonl"):
        assert {"version", "virtual_s", "real_s"} <= set(e)
    dispatches = [e for e in read_events(run / "events.jsonl") if e["event"] == "dispatch"]
    assert all(e["bytes"] > 0 for e in dispatches)
    assert summary["totals"]["bytes_down"] == sum(e["bytes"] for e in dispatches)
    assert json.loads((run / "summary.json").read_text())["final"] == summary["final"]
    base = load_classifier(
        "minilm",
        2,
        random_init={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    )
    PeftModel.from_pretrained(base, run / "adapter")


def test_an_existing_run_directory_needs_resume_and_the_same_config(tiny_config, tmp_path):
    run_experiment(tiny_config(), out=tmp_path / "run")
    with pytest.raises(ConfigError, match="already exists; pass --resume"):
        run_experiment(tiny_config(), out=tmp_path / "run")
    with pytest.raises(ConfigError, match="config differs"):
        run_experiment(tiny_config("training.lr=0.1"), out=tmp_path / "run", resume=True)
    again = run_experiment(tiny_config(), out=tmp_path / "run", resume=True)  # finished: returns the summary
    assert again["totals"]["versions"] == 3


def test_a_run_started_before_a_field_existed_resumes_with_it_at_its_default(tiny_config, tmp_path):
    import yaml

    from tests.conftest import run_killed

    whole = run_experiment(tiny_config(), out=tmp_path / "whole")
    run_killed(tiny_config(), tmp_path / "old", at_version=2)
    # what an older fedlora recorded: the fields added since are absent from its config.yaml
    recorded = yaml.safe_load((tmp_path / "old" / "config.yaml").read_text())
    del recorded["validation"]["max_rejections_in_a_row"], recorded["transport"]["batch_jobs"], recorded["privacy"]
    (tmp_path / "old" / "config.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    resumed = run_experiment(tiny_config(), out=tmp_path / "old", resume=True)
    assert resumed["final"] == whole["final"]
    # a field the run did record is still compared as recorded
    recorded["training"]["lr"] = 0.5
    (tmp_path / "old" / "config.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    with pytest.raises(ConfigError, match="config differs.*training.lr"):
        run_experiment(tiny_config(), out=tmp_path / "old", resume=True)


def test_centralized_reference_is_one_client_with_all_data(tiny_config, tmp_path):
    s = run_experiment(tiny_config("clients.count=1", "schedule.per_round=1"), out=tmp_path / "c")
    assert s["totals"]["jobs_arrived"] == 3


def test_cli_run_prints_a_summary_line_and_rejects_bad_config(glue_dir, tmp_path):
    runner = CliRunner()
    args = [
        "run",
        "configs/tiny.yaml",
        "--set",
        f"task.data_dir={glue_dir}",
        "--set",
        "output.progress=false",
        "--set",
        "stop.versions=1",
        "--out",
        str(tmp_path / "cli"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "done: 1 versions" in result.output and str(tmp_path / "cli") in result.output.replace("\n", "")
    bad = runner.invoke(app, ["run", "configs/tiny.yaml", "--set", "aggregator.name=nope"])
    assert bad.exit_code == 2
    assert "aggregator.name: unknown aggregator 'nope'" in bad.output


def test_the_run_seed_reaches_the_aggregator_so_ffa_freezes_a_different_A_per_seed(tiny_config, tmp_path):
    from fedlora.io.state import load_adapter

    def frozen_A(seed: int, run: str):
        cfg = tiny_config("aggregator.name=ffa", "stop.versions=1", f"seed={seed}")
        run_experiment(cfg, out=tmp_path / run)
        adapter = load_adapter(tmp_path / run / "global_adapter.safetensors")
        return {name: f.A for name, f in adapter.layers.items()}

    a0, a0_again, a1 = frozen_A(0, "a"), frozen_A(0, "b"), frozen_A(1, "c")
    assert a0 and a0.keys() == a1.keys()
    assert all(torch.equal(a0[k], a0_again[k]) for k in a0)
    assert not any(torch.allclose(a0[k], a1[k]) for k in a0)
