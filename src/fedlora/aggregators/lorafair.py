"""LoRA-FAIR (Bian, Wang, Zhang, Xu, 2025, "LoRA-FAIR: Federated LoRA Fine-Tuning with Aggregation and
Initialization Refinement", ICCV): average the factors, then correct B so the pair approximates the exact sum.

The server averages the factors (FedIT) and adds a residual dB to the averaged B, chosen so that the
corrected pair comes as close as a rank-r pair on the averaged A can to the exact weighted sum of the
clients' updates; clients continue from the corrected pair (homogeneous ranks, c_i = w_i alpha_i / r_i,
s_g = alpha_g / r):

    A_g = sum_i w_i A_i,   B_avg = sum_i w_i B_i (alpha_i / alpha_g),   M = sum_i c_i B_i A_i,
    dB = argmin_dB ||M / s_g - (B_avg + dB) A_g||_F^2 + lambda ||dB||_F^2
       = (M / s_g - B_avg A_g) A_g^T (A_g A_g^T + lambda I)^-1,           B_g = B_avg + dB,

with lambda = `ridge` * tr(A_g A_g^T) / r (scale-free). The paper states the objective with a similarity
S(M, (B_avg + dB) A_g) plus lambda ||dB|| and solves it iteratively on the server; fedlora takes the
Frobenius distance, whose minimiser is the closed form above (the least-squares projection of M onto the
row space of A_g as ridge -> 0). It is computed in factored form (M A_g^T = sum_i c_i B_i (A_i A_g^T)),
never forming M. Logged: `rel_error` of the corrected pair and `rel_error_uncorrected` (FedIT's) beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from fedlora.aggregators.base import AGGREGATORS
from fedlora.aggregators.fedit import FedIT
from fedlora.aggregators.support import Diagnostics, factor_space_error, layer_generator, product_terms
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.algebra import Term
from fedlora.lora.factorized import F64


class LoRAFAIROptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ridge: float = Field(1e-3, ge=0, description="lambda of the correction, relative to tr(A_g A_g^T) / r")


@AGGREGATORS.register("lorafair")
class LoRAFAIR(FedIT):
    Options = LoRAFAIROptions
    options: LoRAFAIROptions
    privacy_space = None  # the correction reads each update, not only their sum: client-side noise only

    def combine(self, terms: Sequence[Term]) -> Adapter:
        averaged = super().combine(terms)  # FedIT's A_g and B_avg, and their bias
        uncorrected = self.last_diagnostics
        diag = Diagnostics()
        layers = {}
        for name, f in averaged.layers.items():
            exact = product_terms(terms, name)
            B = f.B.to(F64) + self.correction(exact, f)
            layers[name] = LoRAFactors(f.A, B.to(f.B.dtype), f.alpha)
            diag.add_error(*factor_space_error(layers[name], exact, layer_generator(self.seed, "lorafair", name)))
        self.last_diagnostics = {
            **diag.result(),
            "rel_error_uncorrected": uncorrected["rel_error"],
            "rel_error_uncorrected_max": uncorrected["rel_error_max"],
        }
        return Adapter(layers=layers, extras=averaged.extras)

    def correction(self, exact: Sequence[tuple[float, torch.Tensor, torch.Tensor]], f: LoRAFactors) -> torch.Tensor:
        """dB (d_out x r, float64) for one layer: `exact` = [(c_i, B_i, A_i)], `f` = (A_g, B_avg)."""
        A = f.A.to(F64)
        gram = A @ A.T  # r x r
        # (M / s_g - B_avg A_g) A_g^T, with M A_g^T = sum_i c_i B_i (A_i A_g^T)
        target = torch.zeros(f.d_out, f.rank, dtype=F64)
        for c, B_i, A_i in exact:
            target += (c / f.scaling) * (B_i.to(F64) @ (A_i.to(F64) @ A.T))
        target -= f.B.to(F64) @ gram
        lam = self.options.ridge * float(torch.trace(gram)) / f.rank
        if lam > 0.0:
            eye = torch.eye(f.rank, dtype=F64)
            return torch.linalg.solve(gram + lam * eye, target.T).T  # gram is symmetric
        return target @ torch.linalg.pinv(gram, hermitian=True)
