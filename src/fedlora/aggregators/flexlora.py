"""FlexLoRA (Bai et al., 2024, "Federated fine-tuning of large language models under heterogeneous tasks and
client resources"): the dense reference for product-space aggregation.

The server forms the dense update M = sum_i w_i (alpha_i / r_i) B_i A_i (d_out x d_in) and takes its full
SVD; the global adapter keeps the top r_max directions and a client of rank r receives the top r (the
truncation is nested, so this equals FlexLoRA's per-client SVD of M). Same result as `hlora` with
`method: exact`, at O(d_out d_in sum r_i + d_out d_in min(d_out, d_in)) per layer: the speed baseline.
"""

from __future__ import annotations

from fedlora.aggregators.base import AGGREGATORS
from fedlora.aggregators.hlora import ProductSpaceAggregator
from fedlora.aggregators.support import Diagnostics
from fedlora.lora.factorized import FactoredSVD, ProductTerm, dense_product_sum, svd_dense


@AGGREGATORS.register("flexlora")
class FlexLoRA(ProductSpaceAggregator):
    def _svd(self, terms: list[ProductTerm], layer: str, diag: Diagnostics) -> FactoredSVD:
        return svd_dense(dense_product_sum(terms))

    @property
    def name(self) -> str:
        return "flexlora"
