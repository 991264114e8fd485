"""`run_experiment`'s run-directory handling on real tiny runs: start-up failures, resumes, refusals, modes.

(The decisions themselves are unit-tested in tests/io/test_rundir.py; here they meet a real run.)
"""

from __future__ import annotations

import os
import shutil

import pytest
from typer.testing import CliRunner

from fedlora.cli import app
from fedlora.errors import CheckpointError, ConfigError
from fedlora.experiment import deterministic_view, run_experiment
from tests.conftest import run_killed


def test_a_run_that_fails_at_start_up_leaves_no_directory_and_the_fixed_config_runs(tiny_config, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="exceeds the narrowest adapted layer"):
        run_experiment(tiny_config("lora.rank=64", "stop.versions=1"), out=out)  # the model is only 32 wide
    assert not out.exists()
    said = []
    summary = run_experiment(tiny_config("stop.versions=1"), out=out, resume=True, say=said.append)
    assert summary["totals"]["versions"] == 1 and "starting a fresh run" in said[0]


def test_a_resume_says_where_it_resumes_falls_back_past_a_corrupt_checkpoint_and_refuses_other_data(
    tiny_config, tmp_path, monkeypatch, glue_dir
):
    data_a = tmp_path / "glue_a"
    shutil.copytree(glue_dir / "MRPC", data_a / "MRPC", ignore=shutil.ignore_patterns("original", "test.tsv"))
    monkeypatch.setenv("FEDLORA_DATA_DIR", str(data_a))
    cfg = tiny_config("task.data_dir=null", "stop.versions=4")
    full = run_experiment(cfg, out=tmp_path / "full")

    out = tmp_path / "killed"
    run_killed(cfg, out, at_version=3)  # the checkpoints of versions 2 (the last) and 1 (the previous) on disk
    data_b = tmp_path / "glue_b"
    shutil.copytree(data_a, data_b)
    dev = data_b / "MRPC" / "dev.tsv"
    dev.write_text(dev.read_text().replace("the", "a", 1))  # other data, the same config
    monkeypatch.setenv("FEDLORA_DATA_DIR", str(data_b))
    with pytest.raises(ConfigError, match="was started on the data in .*glue_a.* but this resume reads .*glue_b"):
        run_experiment(cfg, out=out, resume=True)
    monkeypatch.setenv("FEDLORA_DATA_DIR", str(data_a))

    tensors = out / "checkpoints" / "checkpoint" / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])  # the last checkpoint cut short
    said = []
    resumed = run_experiment(cfg, out=out, resume=True, say=said.append)
    assert any("tensors.safetensors is unreadable" in s and "previous checkpoint (version 1)" in s for s in said)
    assert any(s.startswith("resuming from version 1 (virtual t=") for s in said)
    assert deterministic_view(resumed) == deterministic_view(full)  # exactly the uninterrupted numbers


def test_a_resume_with_no_intact_checkpoint_names_the_file(tiny_config, tmp_path):
    cfg = tiny_config("stop.versions=3")
    out = tmp_path / "run"
    run_killed(cfg, out, at_version=1)  # only version 0 checkpointed: no previous one
    (out / "checkpoints" / "checkpoint" / "state.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"checkpoint/state\.json is unreadable .*no previous checkpoint"):
        run_experiment(cfg, out=out, resume=True)


def test_every_file_of_a_run_directory_follows_the_umask(tiny_config, tmp_path):
    old = os.umask(0o002)
    try:
        run_experiment(tiny_config("stop.versions=2"), out=tmp_path / "run")
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in (tmp_path / "run").rglob("*")}
    files = {k: v for k, v in modes.items() if not (tmp_path / k).is_dir()}
    assert {k for k in files if k.endswith(".safetensors")} >= {
        "run/global_adapter.safetensors",
        "run/adapter/adapter_model.safetensors",
        "run/checkpoints/checkpoint/tensors.safetensors",
    }
    assert set(files.values()) == {0o664}, files


def test_a_full_disk_during_a_checkpoint_is_one_error_line(glue_dir, tmp_path, monkeypatch):
    import errno

    import fedlora.io.state as state

    def full(tensors, path, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(state, "save_file", full)
    args = ["run", "configs/tiny.yaml", "--set", f"task.data_dir={glue_dir}", "--set", "output.progress=false"]
    result = CliRunner().invoke(app, [*args, "--set", "stop.versions=2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: the disk is full while writing") and "--resume" in line
