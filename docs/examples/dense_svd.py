"""Example aggregator in one file: product-space averaging, the textbook (dense) way.

Every client update means dW_i = (alpha_i / r_i) B_i A_i. This aggregator forms the weighted sum
M = sum_i w_i dW_i densely, takes its SVD and keeps the top r_max directions (Eckart-Young: the best
rank-r_max approximation of M). `hlora` computes the same result without the dense d_out x d_in matrix;
this file is the version you would write first, and tests/test_docs_reference.py checks that they agree.

To use it: copy this file to src/fedlora/aggregators/ and add it to the import line of that package's
__init__.py (then `aggregator: {name: dense_svd}` works in any config and on the CLI), or import it in your
own script before loading a config (`import dense_svd; run_experiment(load_config(...))`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from fedlora.aggregators.base import AGGREGATORS, Aggregator
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.algebra import Term, check_terms, combine_extras


class DenseSVDOptions(BaseModel):
    """Options are a pydantic model: they become the config section and the config reference for free."""

    model_config = ConfigDict(extra="forbid")
    sigma: Literal["A", "B"] = Field("B", description="the factor that carries the singular values")


@AGGREGATORS.register("dense_svd")
class DenseSVD(Aggregator):
    """Dense product-space averaging truncated to r_max by an SVD (a teaching example; see hlora)."""

    Options = DenseSVDOptions
    options: DenseSVDOptions
    # The default `distribute` hands the global adapter to clients of the server's rank only; hlora.py shows
    # how to give a rank-r client the top r directions instead.
    supports_mixed_ranks = False

    def combine(self, terms: Sequence[Term]) -> Adapter:
        check_terms(terms)  # same layers and shapes in every term, finite weights
        alpha = terms[0][1].layers[next(iter(terms[0][1].layers))].alpha
        scaling = alpha / self.rank  # the global adapter's alpha / r_max
        layers = {}
        for name, ref in terms[0][1].layers.items():
            M = sum(float(w) * ad.layers[name].delta(torch.float64) for w, ad in terms)
            U, S, Vh = torch.linalg.svd(M, full_matrices=False)
            U, S, Vh = U[:, : self.rank], S[: self.rank], Vh[: self.rank]
            if self.options.sigma == "B":
                B, A = U * S, Vh
            else:
                B, A = U, S[:, None] * Vh
            # s B A must equal the truncated M, with s = alpha / r_max: B absorbs 1 / s
            layers[name] = LoRAFactors(A.to(ref.A.dtype), (B / scaling).to(ref.B.dtype), alpha)
        self.last_diagnostics = {"layers": float(len(layers))}  # recorded with the aggregation event
        return Adapter(layers=layers, extras=combine_extras(terms))
