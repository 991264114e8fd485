"""Save and load nested state (dicts, lists, numbers, tensors, adapters, jobs) as JSON + safetensors.

Checkpoints hold the server's whole state: global adapter, schedule buffers, in-flight jobs. Tensors go
to one safetensors file and the JSON holds references, so nothing is pickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fedlora.jobs import Job, JobResult
from fedlora.lora.adapter import Adapter


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
    moved in; a kill between the two moves leaves only `.old`, which `recover_state` puts back.
    """
    directory = Path(directory)
    recover_state(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    _remove_tree(tmp)  # half-written by a killed save
    tmp.mkdir(parents=True)
    enc = _Encoder()
    meta = enc.encode(state)
    save_file(enc.tensors, str(tmp / "tensors.safetensors"))
    (tmp / "state.json").write_text(json.dumps(meta))
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        directory.replace(old)
        tmp.replace(directory)
        _remove_tree(old)
    else:
        tmp.replace(directory)


def recover_state(directory: str | os.PathLike) -> bool:
    """Finish what a killed `save_state` left half done; True if a complete checkpoint is at `directory`."""
    directory = Path(directory)
    old = directory.with_name(directory.name + ".old")
    if old.exists():
        if directory.exists():  # killed after the swap, while removing the old one
            _remove_tree(old)
        else:  # killed between the two moves: the previous checkpoint is the last complete one
            old.replace(directory)
    return (directory / "state.json").is_file() and (directory / "tensors.safetensors").is_file()


def _remove_tree(path: Path) -> None:
    if path.exists():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()


def load_state(directory: str | os.PathLike) -> Any:
    directory = Path(directory)
    tensors = load_file(str(directory / "tensors.safetensors"))
    return _decode(json.loads((directory / "state.json").read_text()), tensors)


def save_adapter(path: str | os.PathLike, adapter: Adapter, metadata: dict[str, Any] | None = None) -> None:
    meta = {"alphas": json.dumps(adapter.alphas()), **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    save_file({k: v.contiguous() for k, v in adapter.tensors().items()}, str(path), metadata=meta)


def load_adapter(path: str | os.PathLike) -> Adapter:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        alphas = json.loads(fh.metadata()["alphas"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    return Adapter.from_tensors(tensors, alphas)
