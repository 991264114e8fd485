"""FedEx-LoRA (Singhal, Ponkshe, Vepakomma, 2025, "FedEx-LoRA: Exact Aggregation for Federated and Efficient
Fine-Tuning of Foundation Models", ACL): average the factors, fold what the average misses into the base.

Clients continue from the averaged factors, as in FedIT; what that average gets wrong, the residual between
the exact weighted sum of the clients' updates and the product of the averages, is added to the frozen base
weights W_0 (homogeneous ranks, c_i = w_i alpha_i / r_i, s_g = alpha_g / r):

    A_g = sum_i w_i A_i,     B_g = sum_i w_i B_i (alpha_i / alpha_g),
    W_0 <- W_0 + sum_i c_i B_i A_i - s_g B_g A_g,

so the global model W_0 + s_g B_g A_g moves by exactly sum_i c_i B_i A_i. The residual is dense (d_out x
d_in per layer; its rank is at most sum_i r_i + r), and a real client downloads it with the averaged factors.
Under asynchronous schedules the terms are the schedule's (x + sum w (x_i - x_start_i), or mixes): the fold
makes the global model move by exactly that combination of the clients' effective updates.

Logged with each aggregation: `rel_error` of the global model against the exact sum (zero up to rounding,
the point of the method) and `residual`, the share the fold carried (FedIT's bias, ||R||_F / ||sum||_F).
"""

from __future__ import annotations

from collections.abc import Sequence

from fedlora.aggregators.base import AGGREGATORS, BaseFolder
from fedlora.aggregators.fedit import FedIT
from fedlora.lora.adapter import Adapter
from fedlora.lora.algebra import Term
from fedlora.lora.factorized import F64


@AGGREGATORS.register("fedex")
class FedExLoRA(FedIT):
    privacy_space = None  # the folded residual reads each update, not only their sum: client-side noise only

    def combine(self, terms: Sequence[Term]) -> Adapter:
        combined = super().combine(terms)  # FedIT's averages, and their distance to the exact sum
        bias = self.last_diagnostics
        self.last_diagnostics = {
            "rel_error": 0.0,  # after the fold (after_combine) the global model is the exact sum
            "rel_error_max": 0.0,
            "residual": bias["rel_error"],
            "residual_max": bias["rel_error_max"],
        }
        return combined

    def after_combine(self, combined: Adapter, terms: Sequence[Term], version: int, base: BaseFolder) -> Adapter:
        """Fold sum_i c_i B_i A_i - s_g B_g A_g into the frozen base; clients continue from (A_g, B_g)."""
        residual = {}
        for name, f in combined.layers.items():
            exact = sum(float(w) * ad.layers[name].delta(F64) for w, ad in terms if float(w) != 0.0)
            residual[name] = exact - f.delta(F64)
        base.fold(residual)
        return combined
