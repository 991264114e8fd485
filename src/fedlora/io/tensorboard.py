"""Optional TensorBoard event files, written from the run's own events (config `output.tensorboard: true`).

Why a view of the events rather than a second record: events.jsonl is the run's record. The TensorBoard
files under RUN_DIR/tensorboard are rebuilt from it when a run resumes (the event log has then been cut
back to the checkpoint), so they never hold points that the resumed run replaced.

Scalars written: `eval/<metric>` against the global version, `eval_vs_virtual_ms/<metric>` against virtual
milliseconds (TensorBoard steps are integers), and `arrivals/<field>` (staleness, local training metrics)
against the job number. The `tensorboard` package is optional: `pip install tensorboard`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from fedlora.errors import ConfigError

INSTALL_HINT = (
    "output.tensorboard: true needs the tensorboard package; install it with `pip install tensorboard` "
    "(or `pip install 'fedlora[tensorboard]'`), or set output.tensorboard: false"
)

_NOT_SCALARS = {"event", "version", "virtual_s", "real_s", "client", "job", "bytes", "samples", "tag", "rank"}


class ScalarWriter(Protocol):
    """The part of torch.utils.tensorboard.SummaryWriter used here (tests pass a fake)."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class Record(Protocol):
    def __call__(self, event: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def require_tensorboard() -> Callable[[str], ScalarWriter]:
    """The SummaryWriter class, or a ConfigError saying how to install it (called before any training)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return SummaryWriter


class TensorBoardRecord:
    """An event record (callable + close) that passes every event on to `inner` and mirrors scalars to TB."""

    def __init__(
        self,
        inner: Record,
        logdir: Path,
        replay: Iterable[dict[str, Any]] = (),
        writer_factory: Callable[[str], ScalarWriter] | None = None,
    ):
        factory = writer_factory or require_tensorboard()
        if logdir.exists():
            shutil.rmtree(logdir)  # rebuilt from the events: a resumed run's file must not keep replaced points
        logdir.mkdir(parents=True)
        self.inner = inner
        self.writer = factory(str(logdir))
        for event in replay:
            self.write(event)

    def __call__(self, event: dict[str, Any]) -> None:
        self.inner(event)
        self.write(event)

    def write(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "evaluation":
            step_ms = round(float(event["virtual_s"]) * 1000)
            for name, value in _scalars(event):
                self.writer.add_scalar(f"eval/{name}", value, global_step=int(event["version"]))
                self.writer.add_scalar(f"eval_vs_virtual_ms/{name}", value, global_step=step_ms)
        elif kind == "arrival" and "job" in event:
            for name, value in _scalars(event):
                self.writer.add_scalar(f"arrivals/{name}", value, global_step=int(event["job"]))
        elif kind == "stop":
            self.writer.flush()

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.writer.close()


def _scalars(event: dict[str, Any]) -> list[tuple[str, float]]:
    return [
        (k, float(v))
        for k, v in event.items()
        if k not in _NOT_SCALARS and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]


def with_tensorboard(inner: Record, run_dir: Path, events_file: Path) -> TensorBoardRecord:
    """Wrap a run's event log: replay what it already holds (a resume), then mirror new events."""
    from fedlora.io.rundir import read_events

    replay = read_events(events_file) if events_file.is_file() else []
    return TensorBoardRecord(inner, run_dir / "tensorboard", replay)
