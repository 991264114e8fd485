"""FedIT (Zhang et al., 2024, "Towards building the federated GPT"): average A and B separately.

Exact only when all clients share one rank and the factors barely move; it is the homogeneous-rank
baseline. Mixed ranks are refused rather than silently padded (that is `zeropad`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedlora.aggregators.base import AGGREGATORS, Aggregator
from fedlora.errors import ConfigError
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.algebra import Term, check_terms, combine_extras


@AGGREGATORS.register("fedit")
class FedIT(Aggregator):
    supports_mixed_ranks = False

    def combine(self, terms: Sequence[Term]) -> Adapter:
        check_terms(terms)
        ref = terms[0][1]
        layers = {}
        for name, f0 in ref.layers.items():
            ranks = {ad.layers[name].rank for _, ad in terms}
            alphas = {ad.layers[name].alpha for _, ad in terms}
            if len(ranks) > 1:
                raise ConfigError(
                    f"aggregator fedit needs equal ranks, layer {name} has ranks {sorted(ranks)}; "
                    "use aggregator.name: hlora (or zeropad) for heterogeneous ranks"
                )
            if len(alphas) > 1:
                raise ConfigError(f"aggregator fedit needs equal alphas, layer {name} has {sorted(alphas)}")
            A = torch.zeros_like(f0.A, dtype=torch.float64)
            B = torch.zeros_like(f0.B, dtype=torch.float64)
            for w, ad in terms:
                f = ad.layers[name]
                A += float(w) * f.A.to(torch.float64)
                B += float(w) * f.B.to(torch.float64)
            layers[name] = LoRAFactors(A.to(f0.A.dtype), B.to(f0.B.dtype), f0.alpha)
        return Adapter(layers=layers, extras=combine_extras(terms))
