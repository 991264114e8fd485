"""FedIT (Zhang et al., 2024, "Towards building the federated GPT"): average A and B separately.

    A_g = sum_i w_i A_i,   B_g = sum_i w_i B_i

Exact only when all clients share one rank and the factors barely move ((sum w B)(sum w A) != sum w B A);
it is the homogeneous-rank baseline. Mixed ranks are refused rather than silently padded (that is
`zeropad`). The distance to the exact average of products is logged as `rel_error` with each aggregation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedlora.aggregators.base import AGGREGATORS, Aggregator
from fedlora.aggregators.support import Diagnostics, factor_space_error, layer_generator, product_terms
from fedlora.errors import ConfigError
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.algebra import Term, check_terms, combine_extras


@AGGREGATORS.register("fedit")
class FedIT(Aggregator):
    supports_mixed_ranks = False
    privacy_space = "factor"

    def combine(self, terms: Sequence[Term]) -> Adapter:
        check_terms(terms)
        ref = terms[0][1]
        diag = Diagnostics()
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
            # the bias of averaging factors: distance to the weighted average of the clients' products
            exact = product_terms(terms, name)
            diag.add_error(*factor_space_error(layers[name], exact, layer_generator(0, "fedit-error", name)))
        self.last_diagnostics = diag.result()
        return Adapter(layers=layers, extras=combine_extras(terms))
