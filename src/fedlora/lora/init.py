"""Seeded initialisation of adapters, independent of any model object."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from fedlora.lora.adapter import Adapter, LoRAFactors


def init_lora_A(rank: int, d_in: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """peft's default: kaiming-uniform with a=sqrt(5), i.e. U(-1/sqrt(d_in), 1/sqrt(d_in))."""
    bound = 1.0 / math.sqrt(d_in)
    return (torch.rand(rank, d_in, generator=generator, dtype=torch.float64) * 2 - 1).mul_(bound).to(dtype)


def fresh_adapter(
    shapes: Mapping[str, tuple[int, int]],
    rank: int,
    alpha: float,
    generator: torch.Generator,
    extras: Mapping[str, torch.Tensor] | None = None,
    dtype=torch.float32,
) -> Adapter:
    """A new adapter: random A, zero B (so its effective update starts at zero), layers in sorted order.

    `shapes` maps layer -> (d_out, d_in).
    """
    layers = {}
    for name in sorted(shapes):
        d_out, d_in = shapes[name]
        layers[name] = LoRAFactors(
            init_lora_A(rank, d_in, generator, dtype), torch.zeros(d_out, rank, dtype=dtype), float(alpha)
        )
    return Adapter(layers=layers, extras={k: v.detach().clone() for k, v in (extras or {}).items()})
