"""Checks and linear algebra on adapters shared by every aggregator (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedlora.lora.adapter import Adapter, LoRAFactors

Term = tuple[float, Adapter]


def check_terms(terms: Sequence[Term]) -> None:
    """All terms must describe the same layers with the same (d_out, d_in) and the same extras."""
    if not terms:
        raise ValueError("cannot combine an empty list of adapters")
    ref = terms[0][1]
    for i, (w, ad) in enumerate(terms):
        if not torch.isfinite(torch.tensor(float(w))):
            raise ValueError(f"term {i}: weight {w} is not finite")
        if set(ad.layers) != set(ref.layers):
            diff = sorted(set(ad.layers) ^ set(ref.layers))
            raise ValueError(f"term {i}: layer set differs from term 0 (differing layers: {diff[:5]})")
        if set(ad.extras) != set(ref.extras):
            raise ValueError(f"term {i}: extra trainables differ from term 0")
        for name, f in ad.layers.items():
            g = ref.layers[name]
            if (f.d_out, f.d_in) != (g.d_out, g.d_in):
                raise ValueError(
                    f"term {i}, layer {name}: shape (d_out, d_in)=({f.d_out}, {f.d_in}) != ({g.d_out}, {g.d_in})"
                )
        for name, t in ad.extras.items():
            if t.shape != ref.extras[name].shape:
                raise ValueError(f"term {i}, extra {name}: shape {tuple(t.shape)} != {tuple(ref.extras[name].shape)}")


def combine_extras(terms: Sequence[Term]) -> dict[str, torch.Tensor]:
    """Non-LoRA trainables are combined linearly with the schedule's weights, in every aggregator."""
    ref = terms[0][1]
    out = {}
    for name, t in ref.extras.items():
        acc = torch.zeros_like(t, dtype=torch.float64)
        for w, ad in terms:
            acc += float(w) * ad.extras[name].to(torch.float64)
        out[name] = acc.to(t.dtype)
    return out


def rescale_alpha(adapter: Adapter, alpha: float) -> Adapter:
    """Same effective update, expressed with another alpha (B absorbs the change of scaling)."""
    layers = {}
    for name, f in adapter.layers.items():
        factor = f.alpha / alpha if alpha else 0.0
        layers[name] = LoRAFactors(f.A.clone(), f.B * factor, float(alpha))
    return Adapter(layers=layers, extras={k: v.clone() for k, v in adapter.extras.items()})
