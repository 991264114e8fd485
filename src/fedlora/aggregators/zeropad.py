"""Zero-padding (HetLoRA, Cho et al., 2024, "Heterogeneous LoRA for federated fine-tuning of on-device
foundation models"): pad every client's factors to r_max and average them separately.

    A_g = sum_i w_i pad(A_i),   B_g = sum_i w_i pad(B_i (alpha_i/r_i) / (alpha_g/r_max))

(B is first re-expressed at the global scaling, so a padded adapter means the same update as the client's.)
Cheap, but biased for mixed ranks: (sum w B)(sum w A) != sum w B A, and the zero rows of low-rank clients
shrink the directions only high-rank clients train. A client of rank r receives the first r directions
(HetLoRA's truncation), rescaled for its alpha/r.

Options:
- `weights: samples` uses the schedule's weights as given; `norm` is HetLoRA's sparsity-weighted
  aggregation: per layer, each term's weight is multiplied by the Frobenius norm of its update
  ||(alpha_i/r_i) B_i A_i||_F and renormalised to the same total weight. Only meaningful for an average,
  so it requires non-negative weights.
- `prune: true`: local rank self-pruning (HetLoRA's second ingredient). Each term's trailing rank
  components j whose magnitude ||B[:, j]|| ||A[j, :]|| is below `prune_threshold` times the term's largest
  component magnitude are zeroed before averaging, from the last component backwards and at most
  `prune_max_fraction` of its rank (never the first). HetLoRA adds a training-side regulariser on the
  trailing block and remembers a client's pruned rank; here pruning is a per-update magnitude rule applied
  by the server (it sees updates, not client identities), and pruned components become zero padding so
  every client keeps the one rank its host slot holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from fedlora.aggregators.base import AGGREGATORS, Aggregator
from fedlora.aggregators.support import (
    Diagnostics,
    check_distribute_rank,
    check_max_rank,
    factor_space_error,
    global_alpha,
    layer_generator,
    pad_columns,
    pad_rows,
    revive_dead_directions,
    truncate_for_client,
)
from fedlora.errors import ConfigError
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.algebra import Term, check_terms, combine_extras
from fedlora.lora.factorized import F64, frobenius_sq_factored


class ZeroPadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: Literal["samples", "norm"] = Field(
        "samples", description="the schedule's weights, or HetLoRA's Frobenius-norm (sparsity) weights"
    )
    prune: bool = Field(False, description="HetLoRA-style rank self-pruning of small trailing components")
    prune_threshold: float = Field(0.1, ge=0, lt=1, description="prune components below this share of the largest")
    prune_max_fraction: float = Field(0.5, ge=0, le=1, description="prune at most this share of a term's rank")


def prune_trailing(B: torch.Tensor, A: torch.Tensor, threshold: float, max_fraction: float) -> tuple[int, torch.Tensor]:
    """How many trailing components to drop, and the kept mask (True = kept), for one layer of one term."""
    r = A.shape[0]
    magnitude = B.to(F64).norm(dim=0) * A.to(F64).norm(dim=1)
    keep = torch.ones(r, dtype=torch.bool)
    top = float(magnitude.max()) if r else 0.0
    if top <= 0.0:
        return 0, keep
    limit = min(math.floor(max_fraction * r), r - 1)
    dropped = 0
    for j in range(r - 1, r - 1 - limit, -1):
        if float(magnitude[j]) >= threshold * top:
            break
        keep[j] = False
        dropped += 1
    return dropped, keep


@AGGREGATORS.register("zeropad")
class ZeroPad(Aggregator):
    Options = ZeroPadOptions
    options: ZeroPadOptions
    # under central noise, the product view: the noised sum of effective updates, truncated by an SVD
    privacy_space = "product"

    def combine(self, terms: Sequence[Term]) -> Adapter:
        check_terms(terms)
        check_max_rank(terms, self.rank, "zeropad")
        weights = [float(w) for w, _ in terms]
        if self.options.weights == "norm" and any(w < 0 for w in weights):
            raise ConfigError(
                "aggregator.weights=norm reweights an average and needs non-negative weights, but the schedule "
                f"gave {[round(w, 4) for w in weights]}; use aggregator.weights: samples with this schedule"
            )
        diag = Diagnostics()
        layers = {}
        for name, f0 in terms[0][1].layers.items():
            alpha = global_alpha(terms, name)
            s_g = alpha / self.rank
            padded, originals = [], []
            for _, ad in terms:
                f = ad.layers[name]
                originals.append(f)
                B, A = f.B.to(F64) * (f.scaling / s_g), f.A.to(F64)
                if self.options.prune and f.rank > 1:
                    dropped, keep = prune_trailing(B, A, self.options.prune_threshold, self.options.prune_max_fraction)
                    if dropped:
                        B, A = B * keep[None, :], A * keep[:, None]
                        diag.count("pruned_components", dropped)
                padded.append((pad_columns(B, self.rank), pad_rows(A, self.rank)))
            layer_weights = self._layer_weights(weights, padded, s_g)
            A_g = sum(w * A for w, (_, A) in zip(layer_weights, padded, strict=True))
            B_g = sum(w * B for w, (B, _) in zip(layer_weights, padded, strict=True))
            combined = LoRAFactors(A_g.to(f0.A.dtype), B_g.to(f0.B.dtype), alpha)
            # the reference is the clients' own (unpruned) updates with the weights actually used
            exact = [(w * f.scaling, f.B, f.A) for w, f in zip(layer_weights, originals, strict=True) if w != 0.0]
            diag.add_error(*factor_space_error(combined, exact, layer_generator(self.seed, "zeropad", name)))
            layers[name] = combined
        self.last_diagnostics = diag.result()
        return Adapter(layers=layers, extras=combine_extras(terms))

    def _layer_weights(self, weights: list[float], padded: list, s_g: float) -> list[float]:
        if self.options.weights == "samples":
            return weights
        norms = [math.sqrt(max(frobenius_sq_factored(B, A), 0.0)) * s_g for B, A in padded]
        mass = sum(w * n for w, n in zip(weights, norms, strict=True))
        if mass <= 0.0:  # every update is zero (the first version): nothing to reweight
            return weights
        total = sum(weights)
        return [w * n * total / mass for w, n in zip(weights, norms, strict=True)]

    def distribute(self, adapter: Adapter, rank: int, alpha: float) -> Adapter:
        check_distribute_rank(rank, self.rank, "zeropad")
        revived = {}
        for name, f in adapter.layers.items():
            B, A = revive_dead_directions(f.B, f.A, layer_generator(self.seed, "zeropad-revive", name))
            revived[name] = LoRAFactors(A, B, f.alpha)
        return truncate_for_client(Adapter(layers=revived, extras=adapter.extras), rank, alpha)
