"""Every random draw in fedlora is derived from (seed, purpose, *coordinates).

Deriving instead of sharing one generator is what makes a run give the same numbers whether clients train
serially, in parallel, or after a resume: no draw depends on how many draws came before it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(seed: int, purpose: str, *coords: int | str) -> int:
    """A 63-bit seed that depends only on its arguments (stable across processes and Python versions)."""
    text = "/".join([str(int(seed)), purpose, *(str(c) for c in coords)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def numpy_rng(seed: int, purpose: str, *coords: int | str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, purpose, *coords))


def torch_generator(seed: int, purpose: str, *coords: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose, *coords))


def seed_torch(seed: int, purpose: str, *coords: int | str) -> None:
    """Seed torch's global generator, which dropout and module initialisers draw from."""
    torch.manual_seed(derive_seed(seed, purpose, *coords))
