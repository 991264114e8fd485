"""The run directory's start-up decisions and its errors, without running anything."""

from __future__ import annotations

import errno
import json

import pytest
import torch

from fedlora.errors import CheckpointError, ConfigError, RunDirError
from fedlora.io.rundir import RunDir, config_diff
from fedlora.io.state import save_state

CONFIG = "seed: 0\ntraining:\n  lr: 0.005\n  batch_size: 16\n"


def _notices():
    said: list[str] = []
    return said, said.append


def test_a_fresh_resume_a_finished_run_and_a_missing_directory(tmp_path):
    said, say = _notices()
    rd = RunDir(tmp_path / "run")
    assert rd.open(CONFIG, resume=True, say=say) == "fresh"
    assert said and "does not exist yet" in said[0] and "starting a fresh run" in said[0]
    rd.create(CONFIG)
    save_state(rd.checkpoint, {"version": 2})
    with pytest.raises(ConfigError, match="already exists; pass --resume"):
        rd.open(CONFIG, resume=False, say=say)
    assert rd.open(CONFIG, resume=True, say=say) == "resume"
    rd.write_json(rd.summary, {"final": None})
    assert rd.open(CONFIG, resume=True, say=say) == "finished"


def test_a_config_that_differs_is_refused_naming_the_fields(tmp_path):
    rd = RunDir(tmp_path / "run")
    rd.create(CONFIG)
    save_state(rd.checkpoint, {"version": 1})
    other = CONFIG.replace("0.005", "0.1").replace("seed: 0", "seed: 3")
    with pytest.raises(ConfigError) as err:
        rd.open(other, resume=True, say=print)
    assert "training.lr: 0.005 in the run -> 0.1 now" in str(err.value) and "seed: 0 in the run -> 3 now" in str(
        err.value
    )
    assert config_diff(CONFIG, CONFIG + "extra: 1\n") == ["extra: (absent) in the run -> 1 now"]


def test_a_directory_without_a_checkpoint_starts_afresh_on_resume_even_with_another_config(tmp_path):
    said, say = _notices()
    rd = RunDir(tmp_path / "run")
    rd.create(CONFIG)  # what a run killed before its first checkpoint leaves
    with pytest.raises(ConfigError, match=r"it holds no checkpoint, so --resume starts afresh"):
        rd.open(CONFIG, resume=False, say=say)
    assert rd.open(CONFIG.replace("0.005", "0.1"), resume=True, say=say) == "fresh"
    assert "holds no checkpoint" in said[-1]
    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "cat.jpg").write_bytes(b"\xff")
    with pytest.raises(ConfigError, match="is not a run directory"):  # never treated as a run to overwrite
        RunDir(stranger).open(CONFIG, resume=True, say=say)


def test_an_out_that_is_a_file_or_read_only_is_refused_before_anything_runs(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a directory"):
        RunDir(tmp_path / "file").open(CONFIG, resume=False, say=print)
    with pytest.raises(RunDirError, match="is a file, not a directory; choose another --out"):
        RunDir(tmp_path / "file" / "run").open(CONFIG, resume=False, say=print)
    import fedlora.io.rundir as rundir

    monkeypatch.setattr(rundir.os, "access", lambda path, mode: False)  # as on a read-only mount (even as root)
    with pytest.raises(RunDirError, match=r"is read-only; choose a writable --out"):
        RunDir(tmp_path / "ro" / "run").open(CONFIG, resume=False, say=print)


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import fedlora.io.state as state

    rd = RunDir(tmp_path / "run")
    rd.create(CONFIG)
    rd.save_checkpoint({"version": 1, "t": torch.zeros(2)})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[1]))

    monkeypatch.setattr(state, "save_file", full)
    with pytest.raises(RunDirError) as err:
        rd.save_checkpoint({"version": 2, "t": torch.zeros(2)})
    assert "the disk is full while writing" in str(err.value) and "--resume" in str(err.value)
    monkeypatch.undo()
    assert rd.load_checkpoint(print)["version"] == 1


def test_an_unreadable_last_checkpoint_falls_back_to_the_previous_one(tmp_path):
    said, say = _notices()
    rd = RunDir(tmp_path / "run")
    rd.create(CONFIG)
    for version in (1, 2):
        rd.save_checkpoint({"version": version, "t": torch.full((2,), float(version))})
    (rd.checkpoint / "tensors.safetensors").write_bytes(b"\x00" * 3)
    state = rd.load_checkpoint(say)
    assert state["version"] == 1 and torch.equal(state["t"], torch.ones(2))
    assert "tensors.safetensors is unreadable" in said[0] and "using the previous checkpoint (version 1)" in said[0]
    assert (rd.checkpoint.with_name("checkpoint.corrupt") / "tensors.safetensors").is_file()
    assert rd.load_checkpoint(say)["version"] == 1  # the fallback is now the last checkpoint

    (rd.checkpoint / "state.json").write_text("{")  # and no intact one left
    with pytest.raises(CheckpointError, match=r"state\.json is unreadable .*no previous checkpoint; start the run"):
        rd.load_checkpoint(say)


def test_summary_of_an_unfinished_run_says_so_and_how_to_continue(tmp_path):
    rd = RunDir(tmp_path / "run")
    with pytest.raises(RunDirError, match="does not exist"):
        rd.finished_summary()
    rd.create(CONFIG)
    rd.save_checkpoint({"version": 4})
    with pytest.raises(RunDirError, match=r"unfinished run \(no summary\.json yet, last checkpoint at version 4\)"):
        rd.finished_summary()
    rd.summary.write_text('{"final": ')
    with pytest.raises(RunDirError, match=r"summary\.json is damaged \(not JSON"):
        rd.finished_summary()
    rd.write_json(rd.summary, {"final": None})
    assert rd.finished_summary() == {"final": None}


def test_a_resume_on_other_data_is_refused(tmp_path):
    rd = RunDir(tmp_path / "run")
    rd.create(CONFIG)
    rd.write_json(rd.run_record, {"data": {"source": "/data/a/MRPC", "sha256": "aa" * 32}})
    rd.check_data({"source": "/data/a/MRPC", "sha256": "aa" * 32})
    with pytest.raises(ConfigError, match=r"started on the data in /data/a/MRPC .* but this resume reads /data/b/MRPC"):
        rd.check_data({"source": "/data/b/MRPC", "sha256": "bb" * 32})
    (rd.run_record).write_text(json.dumps({}))  # a run from before fingerprints: nothing to compare
    rd.check_data({"source": "/data/b/MRPC", "sha256": "bb" * 32})
