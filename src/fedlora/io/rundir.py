"""The run directory: resolved config, events.jsonl, summary.json, checkpoints, the exported adapter."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fedlora.io.state import recover_state

CHECKPOINT = "checkpoint"


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def events(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def run_record(self) -> Path:
        return self.path / "run.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoints" / CHECKPOINT

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    def is_finished(self) -> bool:
        return self.summary.is_file()

    def has_checkpoint(self) -> bool:
        return recover_state(self.checkpoint)  # a save killed mid-swap leaves the previous checkpoint aside

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text())

    def write_json(self, path: Path, obj: Any) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
        tmp.replace(path)


class EventLog:
    """Append-only JSON lines, flushed per line; on resume it is cut back to the checkpoint's count."""

    def __init__(self, path: Path, keep_lines: int | None = None):
        self.path = path
        if keep_lines is not None and path.exists():
            lines = path.read_text().splitlines(keepends=True)[:keep_lines]
            path.write_text("".join(lines))
        elif keep_lines is None and path.exists():
            path.unlink()
        self._fh = path.open("a", encoding="utf-8")

    def __call__(self, event: dict[str, Any]) -> None:
        self._fh.write(json.dumps(event, sort_keys=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_events(path: str | os.PathLike) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
