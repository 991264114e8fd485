"""A LoRA adapter as plain tensors: what clients train, the server combines, and wires carry.

Keeping the adapter independent of any model object is what lets one frozen base model serve every
simulated client: a client is an `Adapter` plus an index into the partition.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class LoRAFactors:
    """One layer's low-rank update dW = (alpha / r) * B @ A, with A: r x d_in and B: d_out x r."""

    A: Tensor
    B: Tensor
    alpha: float

    def __post_init__(self) -> None:
        if self.A.ndim != 2 or self.B.ndim != 2:
            raise ValueError(f"LoRA factors must be matrices, got A {tuple(self.A.shape)}, B {tuple(self.B.shape)}")
        if self.A.shape[0] != self.B.shape[1]:
            raise ValueError(
                f"rank mismatch: A is {tuple(self.A.shape)} (r x d_in) but B is {tuple(self.B.shape)} (d_out x r)"
            )

    @property
    def rank(self) -> int:
        return int(self.A.shape[0])

    @property
    def scaling(self) -> float:
        return float(self.alpha) / self.rank if self.rank else 0.0

    @property
    def d_in(self) -> int:
        return int(self.A.shape[1])

    @property
    def d_out(self) -> int:
        return int(self.B.shape[0])

    def delta(self, dtype: torch.dtype | None = None) -> Tensor:
        """The dense effective update (alpha/r) B A; for tests and small layers only."""
        A, B = (self.A, self.B) if dtype is None else (self.A.to(dtype), self.B.to(dtype))
        return self.scaling * (B @ A)


@dataclass(frozen=True)
class Adapter:
    """LoRA factors per layer plus the other trainables (e.g. the classifier head) by parameter name."""

    layers: Mapping[str, LoRAFactors]
    extras: Mapping[str, Tensor] = field(default_factory=dict)

    @classmethod
    def from_factors(
        cls,
        factors: Mapping[str, tuple[Tensor, Tensor]],
        alpha: float | Mapping[str, float],
        extras: Mapping[str, Tensor] | None = None,
    ) -> Adapter:
        """Build from {layer: (A, B)}; `alpha` is one number or one per layer."""
        layers = {}
        for name, (A, B) in factors.items():
            a = alpha[name] if isinstance(alpha, Mapping) else alpha
            layers[name] = LoRAFactors(A, B, float(a))
        return cls(layers=dict(layers), extras=dict(extras or {}))

    def rank(self, layer: str) -> int:
        return self.layers[layer].rank

    @property
    def ranks(self) -> dict[str, int]:
        return {name: f.rank for name, f in self.layers.items()}

    @property
    def max_rank(self) -> int:
        return max((f.rank for f in self.layers.values()), default=0)

    def delta(self, layer: str, dtype: torch.dtype | None = None) -> Tensor:
        return self.layers[layer].delta(dtype)

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: every factor and extra tensor at its stored dtype."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def tensors(self) -> dict[str, Tensor]:
        """A flat name -> tensor view (the safetensors layout); alphas live in `alphas()`."""
        out: dict[str, Tensor] = {}
        for name, f in self.layers.items():
            out[f"lora.{name}.A"] = f.A
            out[f"lora.{name}.B"] = f.B
        for name, t in self.extras.items():
            out[f"extra.{name}"] = t
        return out

    def alphas(self) -> dict[str, float]:
        return {name: f.alpha for name, f in self.layers.items()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Tensor], alphas: Mapping[str, float]) -> Adapter:
        factors: dict[str, dict[str, Tensor]] = {}
        extras: dict[str, Tensor] = {}
        for key, t in tensors.items():
            kind, _, rest = key.partition(".")
            if kind == "lora":
                name, _, which = rest.rpartition(".")
                factors.setdefault(name, {})[which] = t
            elif kind == "extra":
                extras[rest] = t
            else:
                raise ValueError(f"unexpected adapter tensor {key!r}")
        missing = sorted(set(factors) ^ set(alphas))
        if missing:
            raise ValueError(f"alphas and factors disagree on layers: {missing}")
        layers = {n: LoRAFactors(f["A"], f["B"], float(alphas[n])) for n, f in factors.items()}
        return cls(layers=layers, extras=extras)

    def map(self, fn) -> Adapter:
        """Apply `fn` to every tensor (e.g. `.clone()`, `.to(float64)`), keeping layout and alphas."""
        return Adapter(
            layers={n: LoRAFactors(fn(f.A), fn(f.B), f.alpha) for n, f in self.layers.items()},
            extras={n: fn(t) for n, t in self.extras.items()},
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def allclose(self, other: Adapter, atol: float = 0.0, rtol: float = 0.0) -> bool:
        if set(self.layers) != set(other.layers) or set(self.extras) != set(other.extras):
            return False
        for n, f in self.layers.items():
            g = other.layers[n]
            if f.alpha != g.alpha or f.A.shape != g.A.shape or f.B.shape != g.B.shape:
                return False
            if not (torch.allclose(f.A, g.A, atol=atol, rtol=rtol) and torch.allclose(f.B, g.B, atol=atol, rtol=rtol)):
                return False
        return all(
            self.extras[n].shape == t.shape and torch.allclose(self.extras[n], t, atol=atol, rtol=rtol)
            for n, t in other.extras.items()
        )
