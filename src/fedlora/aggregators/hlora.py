"""HLoRA: heterogeneous-rank LoRA combined in product space, factored without the dense matrix.

Each term is an effective update dW_i = (alpha_i / r_i) B_i A_i. The combination is

    M = sum_i w_i (alpha_i / r_i) B_i A_i,

factored back to the server's rank r_max by a truncated SVD (Eckart-Young: the best rank-r_max
approximation). Zero-padding the factors instead (`zeropad`) is biased: the product of averages is not the
average of products, and low-rank clients' zeros shrink high-rank clients' extra directions.

M is never formed: B_s = [B_1 ... B_n] and A_s = [c_1 A_1; ...; c_n A_n] are QR-factored and the small
(sum r_i)^2 core is SVD-ed (`method: exact`, cost O((d_out + d_in) (sum r_i)^2)). When sum r_i approaches the
layer width, a randomized range finder with power iterations on the factored form (`method: randomized`,
O(sum r_i * d * (r_max + oversample)) per power iteration) is linear in the number of clients; `auto` picks
it when sum r_i > 4 (r_max + oversample).

A client of rank r receives the top-r singular directions of the global update rescaled for its own
alpha/r, so its starting effective update is the best rank-r approximation of the global one. Directions
without energy (at the start, B = 0) get seeded orthonormal A rows and zero B columns, never zero A.

Options: `scaling: effective | unscaled` (unscaled reproduces the prototype that ignores alpha/r and
combines B_i A_i), `sigma: B | A | split` (which factor carries the singular values).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from fedlora.aggregators.base import AGGREGATORS, Aggregator
from fedlora.aggregators.support import (
    Diagnostics,
    check_distribute_rank,
    global_alpha,
    layer_generator,
    product_terms,
)
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.algebra import Term, check_terms, combine_extras
from fedlora.lora.factorized import (
    FactoredSVD,
    ProductTerm,
    factors_from_svd,
    randomized_svd_factored,
    svd_factored,
)


class ProductSpaceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scaling: Literal["effective", "unscaled"] = Field(
        "effective", description="combine (alpha_i/r_i) B_i A_i, or B_i A_i as the prototype did (biased)"
    )
    sigma: Literal["B", "A", "split"] = Field("B", description="the factor that carries the singular values")


class ProductSpaceAggregator(Aggregator):
    """Shared by HLoRA and FlexLoRA: the same sum of products, factored by `_svd`, distributed by SVD."""

    Options = ProductSpaceOptions
    options: ProductSpaceOptions
    privacy_space = "product"

    def __init__(self, rank: int, **options):
        super().__init__(rank, **options)
        self._distribute_cache: tuple[Adapter, dict[str, FactoredSVD]] | None = None

    @abstractmethod
    def _svd(self, terms: list[ProductTerm], layer: str, diag: Diagnostics) -> FactoredSVD:
        """The (at least rank-r_max) SVD of sum c_i B_i A_i for one layer."""

    @property
    def _scaled(self) -> bool:
        return self.options.scaling == "effective"

    def _scaling(self, alpha: float, rank: int) -> float:
        return alpha / rank if self._scaled else 1.0

    def combine(self, terms: Sequence[Term]) -> Adapter:
        check_terms(terms)  # any term ranks: the product space has no slots to pad
        diag = Diagnostics()
        layers = {}
        for name, f0 in terms[0][1].layers.items():
            pterms = product_terms(terms, name, scaled=self._scaled)
            alpha = global_alpha(terms, name)
            if pterms:
                svd = self._svd(pterms, name, diag)
            else:  # every weight is zero: the combination is the zero update
                svd = FactoredSVD(
                    torch.zeros(f0.d_out, 0, dtype=torch.float64),
                    torch.zeros(0, dtype=torch.float64),
                    torch.zeros(0, f0.d_in, dtype=torch.float64),
                    0.0,
                )
            total = svd.total_energy
            diag.add_truncation(total, svd.energy_lost(self.rank) * total)
            B, A = factors_from_svd(
                svd,
                self.rank,
                self._scaling(alpha, self.rank),
                self.options.sigma,
                layer_generator(self.seed, "product-space-completion", name),
            )
            layers[name] = LoRAFactors(A.to(f0.A.dtype), B.to(f0.B.dtype), alpha)
        self.last_diagnostics = diag.result()
        return Adapter(layers=layers, extras=combine_extras(terms))

    def distribute(self, adapter: Adapter, rank: int, alpha: float) -> Adapter:
        check_distribute_rank(rank, self.rank, self.name)
        svds = self._global_svds(adapter)
        layers = {}
        for name, f in adapter.layers.items():
            B, A = factors_from_svd(
                svds[name],
                rank,
                self._scaling(alpha, rank),
                self.options.sigma,
                layer_generator(self.seed, "product-space-completion", name),
            )
            layers[name] = LoRAFactors(A.to(f.A.dtype), B.to(f.B.dtype), float(alpha))
        return Adapter(layers=layers, extras={k: v.clone() for k, v in adapter.extras.items()})

    def _global_svds(self, adapter: Adapter) -> dict[str, FactoredSVD]:
        """Exact SVD of each layer of the (rank r_max) global update, cached while the global is unchanged."""
        if self._distribute_cache is not None and self._distribute_cache[0] is adapter:
            return self._distribute_cache[1]
        svds = {
            name: svd_factored([(f.scaling if self._scaled else 1.0, f.B, f.A)]) for name, f in adapter.layers.items()
        }
        self._distribute_cache = (adapter, svds)
        return svds

    @property
    def name(self) -> str:
        return type(self).__name__.lower()


class HLoRAOptions(ProductSpaceOptions):
    method: Literal["auto", "exact", "randomized"] = Field(
        "auto", description="exact QR+core SVD, randomized range finder, or auto (randomized when sum r_i is large)"
    )
    oversample: int = Field(10, ge=0, description="randomized: extra probe columns beyond r_max")
    power_iters: int = Field(2, ge=0, description="randomized: power iterations (sharpen a slowly decaying spectrum)")
    auto_factor: float = Field(4.0, gt=0, description="auto: randomized once sum r_i > auto_factor*(r_max+oversample)")
    sketch_precision: Literal["input", "float64"] = Field(
        "input", description="randomized: products with M in the adapters' precision (float32: faster) or float64"
    )


@AGGREGATORS.register("hlora")
class HLoRA(ProductSpaceAggregator):
    Options = HLoRAOptions
    options: HLoRAOptions

    def uses_randomized(self, total_rank: int, d_out: int, d_in: int) -> bool:
        """Whether a layer with sum r_i = `total_rank` goes through the randomized range finder."""
        k = self.rank + self.options.oversample
        if self.options.method != "auto":
            return self.options.method == "randomized"
        return total_rank > self.options.auto_factor * k and k < min(d_out, d_in)

    def _svd(self, terms: list[ProductTerm], layer: str, diag: Diagnostics) -> FactoredSVD:
        total_rank = sum(B.shape[1] for _, B, _ in terms)
        d_out, d_in = terms[0][1].shape[0], terms[0][2].shape[1]
        if self.uses_randomized(total_rank, d_out, d_in):
            diag.count("randomized_layers")
            return randomized_svd_factored(
                terms,
                self.rank,
                layer_generator(self.seed, "hlora-range-finder", layer),
                oversample=self.options.oversample,
                power_iters=self.options.power_iters,
                sketch_dtype=torch.float64 if self.options.sketch_precision == "float64" else None,
            )
        return svd_factored(terms)

    @property
    def name(self) -> str:
        return "hlora"
