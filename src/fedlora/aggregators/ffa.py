"""FFA-LoRA (Sun et al., 2024, "Improving LoRA in privacy-preserving federated learning"): A frozen, B averaged.

A stays at one shared seeded initialisation A_0 (r_max x d_in, peft's kaiming-uniform init) for the whole
run and only B is trained and exchanged. A client of rank r trains B (d_out x r) against the first r rows
of A_0, so averaging B is exact even for mixed ranks:

    B_g = sum_i w_i pad(B_i (alpha_i/r_i) / (alpha_g/r_max)),
    so (alpha_g/r_max) B_g A_0 = sum_i w_i (alpha_i/r_i) B_i A_0[:r_i].

A_0 depends only on (`seed`, layer name, r_max, d_in), so it needs no state and survives resumes. Clients
train B only: the `trains` hook says so for every version, and local training freezes A.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from fedlora.aggregators.base import AGGREGATORS, Aggregator
from fedlora.aggregators.support import (
    Diagnostics,
    check_distribute_rank,
    check_max_rank,
    factor_space_error,
    global_alpha,
    layer_generator,
    pad_columns,
)
from fedlora.jobs import Trains
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.algebra import Term, check_terms, combine_extras
from fedlora.lora.factorized import F64
from fedlora.lora.init import init_lora_A


class FFAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@AGGREGATORS.register("ffa")
class FFA(Aggregator):
    Options = FFAOptions
    options: FFAOptions
    privacy_space = "factor"

    def __init__(self, rank: int, **options: Any):
        super().__init__(rank, **options)
        self._shared: dict[tuple[str, int, torch.dtype], torch.Tensor] = {}

    def shared_A(self, layer: str, d_in: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The frozen A_0 of `layer` (r_max x d_in); clients of rank r use its first r rows."""
        key = (layer, d_in, dtype)
        if key not in self._shared:
            self._shared[key] = init_lora_A(self.rank, d_in, layer_generator(self.seed, "ffa-A", layer), dtype)
        return self._shared[key]

    def trains(self, version: int) -> Trains:
        return "B"

    def _check_frozen(self, i: int, layer: str, f: LoRAFactors) -> None:
        if not bool(f.B.any()):
            return  # a zero update does not depend on A (e.g. the model's own initial adapter)
        A0 = self.shared_A(layer, f.d_in, f.A.dtype)[: f.rank]
        if not torch.allclose(f.A, A0, rtol=1e-5, atol=1e-7):
            raise ValueError(
                f"aggregator ffa: term {i}, layer {layer}: A differs from the shared frozen A; FFA-LoRA clients "
                "must train B only (the trains hook) starting from what ffa.distribute gave them"
            )

    def combine(self, terms: Sequence[Term]) -> Adapter:
        check_terms(terms)
        check_max_rank(terms, self.rank, "ffa")
        diag = Diagnostics()
        layers = {}
        for name, f0 in terms[0][1].layers.items():
            alpha = global_alpha(terms, name)
            s_g = alpha / self.rank
            B_g = torch.zeros(f0.d_out, self.rank, dtype=F64)
            exact = []
            for i, (w, ad) in enumerate(terms):
                f = ad.layers[name]
                self._check_frozen(i, name, f)
                if float(w) != 0.0:
                    B_g += float(w) * pad_columns(f.B.to(F64) * (f.scaling / s_g), self.rank)
                    exact.append((float(w) * f.scaling, f.B, f.A))
            combined = LoRAFactors(self.shared_A(name, f0.d_in, f0.A.dtype).clone(), B_g.to(f0.B.dtype), alpha)
            diag.add_error(*factor_space_error(combined, exact, layer_generator(self.seed, "ffa-error", name)))
            layers[name] = combined
        self.last_diagnostics = diag.result()
        return Adapter(layers=layers, extras=combine_extras(terms))

    def distribute(self, adapter: Adapter, rank: int, alpha: float) -> Adapter:
        """The first `rank` rows of the shared A and the matching B columns, rescaled for alpha/rank."""
        check_distribute_rank(rank, self.rank, "ffa")
        layers = {}
        for name, f in adapter.layers.items():
            self._check_frozen(0, name, f)
            A0 = self.shared_A(name, f.d_in, f.A.dtype)
            B = (f.B[:, :rank].to(F64) * (f.scaling / (alpha / rank))).to(f.B.dtype)
            layers[name] = LoRAFactors(A0[:rank].clone(), B, float(alpha))
        return Adapter(layers=layers, extras={k: v.clone() for k, v in adapter.extras.items()})
