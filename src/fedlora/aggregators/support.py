"""Pieces shared by the aggregators: per-layer product terms, padding, and the per-aggregation diagnostics.

Pure functions on tensors (no I/O, no config): the aggregator modules compose them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from fedlora.errors import ConfigError
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.algebra import Term
from fedlora.lora.factorized import F64, ProductTerm, frobenius_sq_sum
from fedlora.seeding import torch_generator


def product_terms(terms: Sequence[Term], layer: str, scaled: bool = True) -> list[ProductTerm]:
    """[(w_i * alpha_i / r_i, B_i, A_i)] for one layer; zero-weight terms are left out (they add nothing)."""
    out = []
    for w, ad in terms:
        f = ad.layers[layer]
        if float(w) != 0.0 and f.rank > 0:
            out.append((float(w) * (f.scaling if scaled else 1.0), f.B, f.A))
    return out


def global_alpha(terms: Sequence[Term], layer: str) -> float:
    """The alpha the combined adapter carries: the first term's (B absorbs any change of scaling)."""
    return terms[0][1].layers[layer].alpha


def layer_generator(seed: int, purpose: str, layer: str) -> torch.Generator:
    """A generator that depends only on (seed, purpose, layer): same draws every version and after a resume."""
    return torch_generator(seed, purpose, layer)


def pad_columns(B: Tensor, rank: int) -> Tensor:
    return torch.nn.functional.pad(B, (0, rank - B.shape[1]))


def pad_rows(A: Tensor, rank: int) -> Tensor:
    return torch.nn.functional.pad(A, (0, 0, 0, rank - A.shape[0]))


def check_max_rank(terms: Sequence[Term], rank: int, aggregator: str) -> None:
    for i, (_, ad) in enumerate(terms):
        if ad.max_rank > rank:
            raise ConfigError(
                f"aggregator {aggregator}: term {i} has rank {ad.max_rank} above the server rank "
                f"lora.rank={rank}; client ranks must not exceed lora.rank"
            )


def check_distribute_rank(rank: int, server_rank: int, aggregator: str) -> None:
    if not 1 <= rank <= server_rank:
        raise ConfigError(
            f"aggregator {aggregator}: cannot give a client rank {rank}; "
            f"client ranks must be in 1..lora.rank={server_rank}"
        )


def truncate_for_client(adapter: Adapter, rank: int, alpha: float) -> Adapter:
    """The first `rank` directions of each layer (HetLoRA's truncation), B rescaled for the client's alpha/rank."""
    layers = {}
    for name, f in adapter.layers.items():
        if f.rank < rank:
            raise ConfigError(f"layer {name}: the global adapter has rank {f.rank}, below the requested rank {rank}")
        factor = f.scaling / (alpha / rank)
        B = (f.B[:, :rank].to(F64) * factor).to(f.B.dtype)
        layers[name] = LoRAFactors(f.A[:rank].clone(), B, float(alpha))
    return Adapter(layers=layers, extras={k: v.clone() for k, v in adapter.extras.items()})


class Diagnostics:
    """Accumulates per-layer numbers into what the server logs with each aggregation event.

    energy_lost: share of ||sum_i w_i dW_i||_F^2 that truncation to the server rank discards (all layers
    together; `_max` is the worst layer). rel_error: ||dW_global - sum_i w_i dW_i||_F / ||sum_i w_i dW_i||_F,
    the bias of a factor-space combination (or sqrt(energy_lost) for an exact truncated SVD).
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.lost = 0.0
        self.err_sq = 0.0
        self.worst_lost = 0.0
        self.worst_err = 0.0
        self.has_lost = False
        self.counts: dict[str, float] = {}

    def add_truncation(self, total: float, lost: float) -> None:
        self.has_lost = True
        self.total += total
        self.lost += lost
        self.err_sq += lost
        if total > 0:
            self.worst_lost = max(self.worst_lost, lost / total)
            self.worst_err = max(self.worst_err, math.sqrt(max(lost, 0.0) / total))

    def add_error(self, total: float, err_sq: float) -> None:
        self.total += total
        self.err_sq += err_sq
        if total > 0:
            self.worst_err = max(self.worst_err, math.sqrt(max(err_sq, 0.0) / total))

    def count(self, key: str, value: float = 1.0) -> None:
        self.counts[key] = self.counts.get(key, 0.0) + value

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.has_lost:
            out["energy_lost"] = _ratio(self.lost, self.total)
            out["energy_lost_max"] = round(self.worst_lost, 8)
        # no cap: a biased combination can be further from the exact sum than the sum is from zero
        out["rel_error"] = round(math.sqrt(max(self.err_sq, 0.0) / self.total), 8) if self.total > 0 else 0.0
        out["rel_error_max"] = round(self.worst_err, 8)
        out.update(self.counts)
        return out


def _ratio(num: float, den: float) -> float:
    return round(min(1.0, max(0.0, num / den)), 8) if den > 0 else 0.0


def factor_space_error(
    combined: LoRAFactors, exact_terms: Sequence[ProductTerm], generator: torch.Generator
) -> tuple[float, float]:
    """(||sum c_i B_i A_i||_F^2, ||combined update - that sum||_F^2) without forming dense matrices."""
    total = frobenius_sq_sum(exact_terms, generator) if exact_terms else 0.0
    diff = [(combined.scaling, combined.B, combined.A), *((-c, B, A) for c, B, A in exact_terms)]
    return total, frobenius_sq_sum(diff, generator)


def revive_dead_directions(B: Tensor, A: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Give every direction whose A row and B column are both zero a seeded A row (the update is unchanged).

    With both zero, neither factor ever gets a gradient; LoRA's own initialisation (A random, B zero) avoids it.
    """
    dead = (A.abs().sum(dim=1) == 0) & (B.abs().sum(dim=0) == 0)
    if not bool(dead.any()):
        return B, A
    bound = 1.0 / math.sqrt(A.shape[1])
    fresh = (torch.rand(A.shape[0], A.shape[1], generator=generator, dtype=F64) * 2 - 1) * bound
    A = A.clone()
    A[dead] = fresh[dead].to(A.dtype)
    return B, A
