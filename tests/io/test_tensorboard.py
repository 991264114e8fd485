"""TensorBoard mirroring of run events (output.tensorboard), with a fake writer where the package is absent."""

from __future__ import annotations

import importlib.util

import pytest

from fedlora.errors import ConfigError
from fedlora.io.tensorboard import INSTALL_HINT, TensorBoardRecord

HAS_TB = importlib.util.find_spec("tensorboard") is not None


class FakeWriter:
    def __init__(self, logdir: str):
        self.logdir = logdir
        self.scalars: list[tuple[str, float, int]] = []
        self.closed = False

    def add_scalar(self, tag, value, global_step=None):
        self.scalars.append((tag, value, global_step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


class Inner:
    def __init__(self):
        self.events = []
        self.closed = False

    def __call__(self, event):
        self.events.append(event)

    def close(self):
        self.closed = True


EVAL = {"event": "evaluation", "version": 2, "virtual_s": 6.0015, "real_s": 1.0, "accuracy": 0.75, "loss": 0.5}
ARRIVAL = {"event": "arrival", "version": 1, "virtual_s": 3.0, "real_s": 0.5, "client": 3, "job": 7, "staleness": 1}


def test_events_pass_through_and_scalars_are_mirrored(tmp_path):
    writers = []
    inner = Inner()
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "stale-file").write_text("from before a resume")
    rec = TensorBoardRecord(
        inner, tmp_path / "tb", replay=[EVAL], writer_factory=lambda d: writers.append(FakeWriter(d)) or writers[-1]
    )
    assert not (tmp_path / "tb" / "stale-file").exists()  # rebuilt from the (replayed) events
    rec(ARRIVAL)
    rec({"event": "dispatch", "version": 1, "virtual_s": 3.0, "real_s": 0.5, "client": 0, "job": 8})
    rec.close()
    assert inner.events == [
        ARRIVAL,
        {"event": "dispatch", "version": 1, "virtual_s": 3.0, "real_s": 0.5, "client": 0, "job": 8},
    ]  # replayed events are not written twice
    assert writers[0].scalars == [
        ("eval/accuracy", 0.75, 2),
        ("eval_vs_virtual_ms/accuracy", 0.75, 6002),
        ("eval/loss", 0.5, 2),
        ("eval_vs_virtual_ms/loss", 0.5, 6002),
        ("arrivals/staleness", 1.0, 7),
    ]
    assert inner.closed and writers[0].closed


@pytest.mark.skipif(HAS_TB, reason="the tensorboard package is installed here")
def test_missing_package_fails_before_training_with_the_install_command(tiny_config, tmp_path):
    from fedlora.experiment import run_experiment

    cfg = tiny_config("output.tensorboard=true")
    with pytest.raises(ConfigError) as exc:
        run_experiment(cfg, out=tmp_path / "run")
    assert str(exc.value) == INSTALL_HINT and "pip install tensorboard" in INSTALL_HINT
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TB, reason="needs the tensorboard package (pip install tensorboard)")
def test_a_run_writes_event_files(tiny_config, tmp_path):  # pragma: no cover - only where tensorboard is installed
    from fedlora.experiment import run_experiment

    run_experiment(tiny_config("output.tensorboard=true", "stop.versions=1", "training.threads=1"), out=tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
