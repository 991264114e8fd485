import torch

from fedlora.io.state import load_adapter, load_state, save_adapter, save_state
from fedlora.jobs import Job, JobResult
from tests.lora.test_adapter import random_adapter


def test_nested_state_with_adapters_and_jobs_round_trips(tmp_path):
    ad = random_adapter({"q": 2}, {"q": (4, 3)}, alpha=4.0)
    job = Job(
        job_id=3,
        client=1,
        client_job=0,
        rank=2,
        alpha=4.0,
        start_version=5,
        start_adapter=ad,
        steps=2,
        dispatch_time=1.5,
        arrival_time=9.25,
        bytes_down=10,
        bytes_up=10,
        tag=2,
    )
    state = {
        "version": 5,
        "jobs": {3: job},
        "buffer": [JobResult(job, ad, 40, 32, {"train_loss": 0.5})],
        "pair": (1, "x"),
        "t": torch.arange(4.0),
        "none": None,
    }
    save_state(tmp_path / "ck", state)
    save_state(tmp_path / "ck", state)  # overwriting an existing checkpoint is atomic
    back = load_state(tmp_path / "ck")
    assert back["version"] == 5 and back["pair"] == (1, "x") and back["none"] is None
    assert back["jobs"][3].arrival_time == 9.25 and back["jobs"][3].start_adapter.allclose(ad)
    assert back["buffer"][0].metrics == {"train_loss": 0.5} and back["buffer"][0].adapter.allclose(ad)
    assert torch.equal(back["t"], torch.arange(4.0))


def test_adapter_file_round_trip(tmp_path):
    ad = random_adapter({"q": 3, "v": 1}, {"q": (4, 3), "v": (2, 5)}, alpha=2.0)
    save_adapter(tmp_path / "a.safetensors", ad, {"version": 7})
    assert load_adapter(tmp_path / "a.safetensors").allclose(ad)


def test_a_save_killed_at_any_step_leaves_a_complete_checkpoint(tmp_path):
    from fedlora.io.state import recover_state

    ck = tmp_path / "ck"
    save_state(ck, {"version": 1})
    old, tmp = ck.with_name("ck.old"), ck.with_name("ck.tmp")

    tmp.mkdir()  # killed while writing the new one: the old one stands, the next save starts over
    (tmp / "state.json").write_text("{")
    assert recover_state(ck) and load_state(ck) == {"version": 1}
    save_state(ck, {"version": 2})
    assert load_state(ck) == {"version": 2} and not tmp.exists()

    ck.replace(old)  # killed between moving the old one aside and moving the new one in
    assert not ck.exists()
    assert recover_state(ck) and load_state(ck) == {"version": 2} and not old.exists()

    save_state(ck, {"version": 3})  # killed while removing the old one after the swap
    old.mkdir()
    (old / "state.json").write_text("{}")
    assert recover_state(ck) and load_state(ck) == {"version": 3} and not old.exists()
    assert not recover_state(tmp_path / "none")


def test_the_checkpoint_before_the_last_is_kept_and_a_truncated_one_names_its_file(tmp_path):
    import pytest

    from fedlora.errors import CheckpointError
    from fedlora.io.state import previous_checkpoint

    ck = tmp_path / "ck"
    for version in (1, 2, 3):
        save_state(ck, {"version": version, "t": torch.arange(4.0)})
    assert load_state(ck)["version"] == 3 and load_state(previous_checkpoint(ck))["version"] == 2
    tensors = ck / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:20])  # cut short, as by a full disk
    with pytest.raises(CheckpointError, match=rf"checkpoint file {tensors} is unreadable"):
        load_state(ck)
    other = tmp_path / "other"
    save_state(other, {"version": 1})
    (other / "state.json").write_text('{"version": ')
    with pytest.raises(CheckpointError, match=r"state\.json is unreadable \(JSONDecodeError"):
        load_state(other)


def test_safetensors_files_follow_the_umask_like_every_other_file(tmp_path):
    import os

    old = os.umask(0o002)
    try:
        save_adapter(tmp_path / "a.safetensors", random_adapter({"q": 1}, {"q": (2, 2)}, alpha=1.0))
        save_state(tmp_path / "ck", {"t": torch.zeros(1)})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "plain.txt") == 0o664
    assert mode(tmp_path / "a.safetensors") == 0o664
    assert mode(tmp_path / "ck" / "tensors.safetensors") == 0o664
