"""The run directory: resolved config, events.jsonl, summary.json, checkpoints, the exported adapter.

Also where a run starts or resumes (`RunDir.open`): which of a fresh start, a resume and a finished run it
is, with every refusal a `FedLoraError` that says why and what to do, and any file-system error while
writing the directory turned into one such line (`writing`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from fedlora.errors import CheckpointError, ConfigError, RunDirError
from fedlora.io.state import is_complete, load_state, previous_checkpoint, recover_state, save_state

CHECKPOINT = "checkpoint"
#: what a run writes before its first checkpoint (removed again when it fails at start-up)
RUN_FILES = ("config.yaml", "run.json", "run.json.tmp", "events.jsonl", "partition.json", "partition.md")
CORRUPT = ".corrupt"  # an unreadable checkpoint is moved aside to <name>.corrupt when a resume falls back
_FS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR}


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

    @property
    def previous_checkpoint(self) -> Path:
        return previous_checkpoint(self.checkpoint)

    def is_finished(self) -> bool:
        return self.summary.is_file()

    def has_checkpoint(self) -> bool:
        # a save killed mid-swap leaves the previous checkpoint aside; recover_state puts it back
        return recover_state(self.checkpoint) or is_complete(self.previous_checkpoint)

    def read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RunDirError(
                f"{path} is damaged (not JSON: {exc}); delete it and rerun with --resume to rewrite it"
            ) from None

    def write_json(self, path: Path, obj: Any) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        with writing(path):
            tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
            tmp.replace(path)

    # ----- starting, resuming -------------------------------------------------------------------------
    def open(
        self,
        resolved: str,
        resume: bool,
        say: Callable[[str], None],
        redump: Callable[[str], str | None] | None = None,
    ) -> Literal["fresh", "resume", "finished"]:
        """What a run with config text `resolved` does with this directory, or a `FedLoraError` saying why not.

        `redump` re-resolves the recorded config under today's schema: a run started before a field existed
        resumes when that is the only difference (the field at its default).

        Nothing is written here: a run that fails at start-up must not leave a directory that then refuses
        the fixed config.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--out {self.path} is a file, not a directory; give a directory for the run")
        if not (self.path.is_dir() and any(self.path.iterdir())):
            if resume:
                say(f"--resume: {self.path} does not exist yet (or is empty); starting a fresh run there")
            check_writable(self.path)
            return "fresh"
        checkpoint = self.has_checkpoint()
        if not resume:
            hint = "" if checkpoint or self.is_finished() else " (it holds no checkpoint, so --resume starts afresh)"
            raise ConfigError(
                f"run directory {self.path} already exists; pass --resume to continue it or --out elsewhere{hint}"
            )
        if not checkpoint and not self.is_finished():
            if not self.config.is_file():
                raise ConfigError(
                    f"--resume: {self.path} is not a run directory (no config.yaml, no checkpoint); give the run's "
                    "directory, or an empty or new one to start a run there"
                )
            say(f"--resume: {self.path} holds no checkpoint (the run never reached one); starting it afresh")
            check_writable(self.path)
            return "fresh"
        recorded = self.config.read_text(encoding="utf-8") if self.config.is_file() else None
        if recorded is not None and recorded != resolved and (redump is None or redump(recorded) != resolved):
            changed = config_diff(recorded, resolved)
            raise ConfigError(
                f"--resume: the config differs from the one recorded in {self.config} in {'; '.join(changed)}; "
                "resume with the same config (or use a new --out)"
            )
        if self.is_finished():
            return "finished"
        check_writable(self.path)
        return "resume"

    def check_data(self, data: dict[str, Any]) -> None:
        """Refuse a resume on other data than the run was started on (run.json's `data`)."""
        recorded = self.read_json(self.run_record).get("data") if self.run_record.is_file() else None
        if not recorded or recorded.get("sha256") == data.get("sha256"):
            return
        raise ConfigError(
            f"--resume: the run in {self.path} was started on the data in {recorded.get('source')} "
            f"(sha256 {str(recorded.get('sha256'))[:12]}...), but this resume reads {data.get('source')} "
            f"(sha256 {str(data.get('sha256'))[:12]}...); point task.data_dir or FEDLORA_DATA_DIR at the "
            "original data, or start a new run with another --out"
        )

    def create(self, resolved: str) -> None:
        """Make the directory and record the config: the first write of a run."""
        with writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            self.config.write_text(resolved, encoding="utf-8")

    def discard_if_unstarted(self, created: bool) -> None:
        """Remove what a run that failed at start-up wrote, unless the directory holds a checkpoint or a result.

        A directory this run `created` goes entirely; in one that existed only the files a run writes go, so
        nothing else a user keeps there is touched.
        """
        if not self.path.is_dir() or self.has_checkpoint() or self.is_finished():
            return
        if created:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in RUN_FILES:
            with contextlib.suppress(OSError):
                (self.path / name).unlink(missing_ok=True)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        with writing(self.checkpoint):
            save_state(self.checkpoint, state)

    def load_checkpoint(self, say: Callable[[str], None]) -> dict[str, Any]:
        """The last checkpoint's state; if it is unreadable, the one before it (said, and made the last one).

        The unreadable checkpoint is kept as `checkpoint.corrupt` for inspection, so the next save does not
        make it the fallback.
        """
        try:
            return load_state(self.checkpoint)
        except CheckpointError as exc:
            first = exc
        previous = self.previous_checkpoint
        try:
            state = load_state(previous) if is_complete(previous) else None
        except CheckpointError:
            state = None
        if state is None:
            fallback = "the previous checkpoint is unreadable too" if previous.exists() else "no previous checkpoint"
            raise CheckpointError(
                first.path, first.reason, fix=f"{fallback}; start the run afresh in a new --out (or delete {self.path})"
            )
        corrupt = self.checkpoint.with_name(self.checkpoint.name + CORRUPT)
        with writing(self.checkpoint):
            shutil.rmtree(corrupt, ignore_errors=True)
            if self.checkpoint.exists():
                self.checkpoint.replace(corrupt)
            previous.replace(self.checkpoint)
        say(
            f"--resume: {first}; using the previous checkpoint (version {state['version']}) instead; the "
            f"unreadable one is kept as {corrupt}"
        )
        return state

    def finished_summary(self) -> dict[str, Any]:
        """summary.json of a finished run, or a `RunDirError` saying what the directory holds instead."""
        if not self.path.exists():
            raise RunDirError(f"{self.path} does not exist; give a run directory (what `fedlora run` wrote)")
        if not self.path.is_dir():
            raise RunDirError(f"{self.path} is a file, not a run directory")
        if not self.is_finished():
            if not self.config.is_file():
                raise RunDirError(f"{self.path} is not a run directory (it has no config.yaml or summary.json)")
            where = f", last checkpoint at version {v}" if (v := self.checkpoint_version()) is not None else ""
            raise RunDirError(
                f"{self.path} holds an unfinished run (no summary.json yet{where}); wait for it to finish, or "
                f"continue it: fedlora run {self.config} --resume --out {self.path}"
            )
        return self.read_json(self.summary)

    def checkpoint_version(self) -> int | None:
        """The global version of the last checkpoint, or None (no checkpoint, or it cannot be read)."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            for ck in (self.checkpoint, self.previous_checkpoint):
                if is_complete(ck):
                    return int(json.loads((ck / "state.json").read_text())["version"])
        return None


class EventLog:
    """Append-only JSON lines, flushed per line; on resume it is cut back to the checkpoint's count."""

    def __init__(self, path: Path, keep_lines: int | None = None):
        self.path = path
        with writing(path):
            if keep_lines is not None and path.exists():
                lines = path.read_text().splitlines(keepends=True)[:keep_lines]
                path.write_text("".join(lines))
            elif keep_lines is None and path.exists():
                path.unlink()
            self._fh = path.open("a", encoding="utf-8")

    def __call__(self, event: dict[str, Any]) -> None:
        with writing(self.path):
            self._fh.write(json.dumps(event, sort_keys=False) + "\n")
            self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_events(path: str | os.PathLike) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a file-system error while writing under `path` into a `RunDirError` that names the file and the fix."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _FS_ERRORS:
            raise
        raise RunDirError(describe_write_error(exc, Path(path))) from None


def describe_write_error(exc: OSError, path: Path) -> str:
    where = exc.filename or path
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"the disk is full while writing {where}; free some space, then continue with --resume "
            "(the last complete checkpoint is kept)"
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {where} ({exc.strerror}); choose a writable --out"
    return f"cannot write {where} ({exc.strerror}): part of the path is a file, not a directory; choose another --out"


def check_writable(path: Path) -> None:
    """Fail now, before the data and the model are loaded, if `path` (or the nearest existing parent) is read-only."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise RunDirError(
            f"cannot create the run directory {path}: {probe} is a file, not a directory; choose another --out"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot write the run directory {path}: {probe} is read-only; choose a writable --out")


def config_diff(recorded: str, current: str, limit: int = 6) -> list[str]:
    """'field: value in the run -> value now' for each field that differs between two resolved configs."""
    import yaml

    def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(tree, dict):
            return {prefix: tree}
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out

    try:
        old, new = flat(yaml.safe_load(recorded) or {}), flat(yaml.safe_load(current) or {})
    except yaml.YAMLError:
        return ["(the recorded config is not valid YAML)"]
    missing = object()
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, missing) != new.get(k, missing))
    shown = [
        f"{k}: {_show(old.get(k, missing), missing)} in the run -> {_show(new.get(k, missing), missing)} now"
        for k in keys[:limit]
    ]
    return shown + ([f"and {len(keys) - limit} more"] if len(keys) > limit else [])


def _show(value: Any, missing: object) -> str:
    return "(absent)" if value is missing else json.dumps(value)
