"""Save and load nested state (dicts, lists, numbers, tensors, adapters, jobs) as JSON + safetensors.

Checkpoints hold the server's whole state: global adapter, schedule buffers, in-flight jobs. Tensors go
to one safetensors file and the JSON holds references, so nothing is pickled. The checkpoint before the
last one is kept beside it (`<name>.previous`): if the last one turns out unreadable (a disk that filled
up, a file damaged later), a resume falls back to the one before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fedlora.errors import CheckpointError
from fedlora.jobs import Job, JobResult
from fedlora.lora.adapter import Adapter

TENSORS = "tensors.safetensors"
STATE = "state.json"


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def tensor(self, t: torch.Tensor) -> dict[str, Any]:
        key = f"t{len(self.tensors)}"
        self.tensors[key] = t.detach().contiguous().clone()
        return {"__tensor__": key}

    def encode(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return self.tensor(obj)
        if isinstance(obj, Adapter):
            return {"__adapter__": {k: self.tensor(v) for k, v in obj.tensors().items()}, "alphas": obj.alphas()}
        if isinstance(obj, Job):
            fields = {k: self.encode(getattr(obj, k)) for k in Job.__dataclass_fields__}
            return {"__job__": fields}
        if isinstance(obj, JobResult):
            fields = {k: self.encode(getattr(obj, k)) for k in JobResult.__dataclass_fields__}
            return {"__result__": fields}
        if isinstance(obj, dict):
            if not all(isinstance(k, str) for k in obj):
                return {"__intdict__": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
            return {k: self.encode(v) for k, v in obj.items()}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v) for v in obj]}
        if isinstance(obj, list):
            return [self.encode(v) for v in obj]
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot checkpoint object of type {type(obj).__name__}")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__adapter__" in obj:
        return Adapter.from_tensors({k: tensors[v["__tensor__"]] for k, v in obj["__adapter__"].items()}, obj["alphas"])
    if "__job__" in obj:
        return Job(**{k: _decode(v, tensors) for k, v in obj["__job__"].items()})
    if "__result__" in obj:
        return JobResult(**{k: _decode(v, tensors) for k, v in obj["__result__"].items()})
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__intdict__" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__intdict__"]}
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    return {k: _decode(v, tensors) for k, v in obj.items()}


def save_state(directory: str | os.PathLike, state: Any) -> None:
    """Write atomically: a crash at any instant leaves a complete checkpoint, the previous one or the new one.

    The new checkpoint is written beside the old one (`.tmp`), the old one is moved aside (`.old`), the new one
    moved in, and the old one kept as `.previous`; a kill between the two moves leaves only `.old`, which
    `recover_state` puts back.
    """
    directory = Path(directory)
    recover_state(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    _remove_tree(tmp)  # half-written by a killed save
    tmp.mkdir(parents=True)
    enc = _Encoder()
    meta = enc.encode(state)
    save_tensors(enc.tensors, tmp / TENSORS)
    (tmp / STATE).write_text(json.dumps(meta))
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        directory.replace(old)
        tmp.replace(directory)
        _keep_as_previous(old, directory)
    else:
        tmp.replace(directory)


def previous_checkpoint(directory: str | os.PathLike) -> Path:
    """Where the checkpoint before the last one is kept."""
    directory = Path(directory)
    return directory.with_name(directory.name + ".previous")


def _keep_as_previous(old: Path, directory: Path) -> None:
    previous = previous_checkpoint(directory)
    _remove_tree(previous)
    old.replace(previous)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' `save_file`, with the file's mode following the umask like every other file.

    safetensors creates its files with mode 0600, so a run directory shared with a group (umask 002) would
    hold adapters and checkpoints that only their owner can read.
    """
    save_file(tensors, str(path), metadata=metadata)
    follow_umask(path)


def follow_umask(path: str | os.PathLike) -> None:
    """Give a file the mode a plain `open(path, "w")` would have: 0666 minus the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def recover_state(directory: str | os.PathLike) -> bool:
    """Finish what a killed `save_state` left half done; True if a complete checkpoint is at `directory`."""
    directory = Path(directory)
    old = directory.with_name(directory.name + ".old")
    if old.exists():
        if directory.exists():  # killed after the swap, while keeping the old one as the previous
            _keep_as_previous(old, directory)
        else:  # killed between the two moves: the previous checkpoint is the last complete one
            old.replace(directory)
    return is_complete(directory)


def is_complete(directory: str | os.PathLike) -> bool:
    """Both files of a checkpoint are there (whether they can be read is `load_state`'s to find out)."""
    directory = Path(directory)
    return (directory / STATE).is_file() and (directory / TENSORS).is_file()


def _remove_tree(path: Path) -> None:
    if path.exists():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()


def load_state(directory: str | os.PathLike) -> Any:
    """The saved state; a `CheckpointError` naming the file if either file is missing, truncated or corrupt."""
    directory = Path(directory)
    tensors_file, state_file = directory / TENSORS, directory / STATE
    try:
        tensors = load_file(str(tensors_file))
    except Exception as exc:  # safetensors raises its own SafetensorError for a truncated or damaged file
        raise CheckpointError(tensors_file, f"{type(exc).__name__}: {exc}") from None
    try:
        meta = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(state_file, f"{type(exc).__name__}: {exc}") from None
    try:
        return _decode(meta, tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(state_file, f"it does not match {TENSORS}: {type(exc).__name__}: {exc}") from None


def save_adapter(path: str | os.PathLike, adapter: Adapter, metadata: dict[str, Any] | None = None) -> None:
    meta = {"alphas": json.dumps(adapter.alphas()), **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    save_tensors({k: v.contiguous() for k, v in adapter.tensors().items()}, Path(path), metadata=meta)


def load_adapter(path: str | os.PathLike) -> Adapter:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        alphas = json.loads(fh.metadata()["alphas"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    return Adapter.from_tensors(tensors, alphas)
