"""Random adapters of mixed ranks and the dense float64 references the aggregators are checked against."""

from __future__ import annotations

import torch

from fedlora.lora.adapter import Adapter, LoRAFactors

# d_out != d_in in both layers (and the two layers differ), so a transposed factor cannot pass unnoticed
SHAPES = {"attn.q": (12, 7), "attn.v": (5, 11)}


def random_adapter(rank: int, alpha: float, seed: int, shapes=SHAPES, zero_B: bool = False) -> Adapter:
    """An adapter with the same rank in every layer (as hosts train them), float64 factors and a head."""
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for name, (d_out, d_in) in shapes.items():
        A = torch.randn(rank, d_in, generator=g, dtype=torch.float64)
        B = torch.zeros(d_out, rank, dtype=torch.float64) if zero_B else torch.randn(d_out, rank, generator=g)
        layers[name] = LoRAFactors(A, B.to(torch.float64), alpha)
    return Adapter(layers=layers, extras={"head.weight": torch.randn(2, 3, generator=g, dtype=torch.float64)})


def mixed_terms(ranks=(2, 3, 5, 1), weights=(0.4, -0.25, 0.5, 0.35), alphas=(4.0, 16.0, 8.0, 2.0), seed=0):
    return [(w, random_adapter(r, a, seed + i)) for i, (w, r, a) in enumerate(zip(weights, ranks, alphas, strict=True))]


def dense_sum(terms, layer: str) -> torch.Tensor:
    """sum_i w_i (alpha_i / r_i) B_i A_i, formed densely in float64."""
    return sum(float(w) * ad.layers[layer].delta(torch.float64) for w, ad in terms)


def best_rank(M: torch.Tensor, rank: int) -> torch.Tensor:
    """The dense truncated SVD (Eckart-Young optimum)."""
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return U[:, :rank] @ torch.diag(S[:rank]) @ Vh[:rank]


def tail_energy(M: torch.Tensor, rank: int) -> float:
    S = torch.linalg.svdvals(M)
    return float(S[rank:].square().sum())
