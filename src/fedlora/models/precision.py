"""The frozen base in a low-precision dtype, everything trained in float32.

On a CPU with AVX-512 BF16 a bfloat16 base makes a MiniLM LoRA step about twice as fast, while the adapters
and the head stay in float32 (peft's `autocast_adapter_dtype`) so optimizer updates keep their precision and
aggregation never sees bfloat16. The head receives the base's bfloat16 features; a pre-hook casts them up.
"""

from __future__ import annotations

from typing import Literal

import torch

DType = Literal["float32", "bfloat16", "float16"]


def torch_dtype(name: DType) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _inputs_to_float32(module, args):
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def keep_float32(module: torch.nn.Module) -> None:
    """Make `module` (a head or pooler on a low-precision base) compute in float32 whatever it is fed."""
    module.float()
    module.register_forward_pre_hook(_inputs_to_float32)
