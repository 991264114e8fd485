"""FLoRA (Wang et al., 2024, "FLoRA: Federated fine-tuning large language models with heterogeneous
low-rank adaptations"): exact stacking, merged into the base weights every version.

    B_g = [c_1 B_1, ..., c_n B_n] / s_g,   A_g = [A_1; ...; A_n],   c_i = w_i alpha_i / r_i,  s_g = alpha_g / R

so s_g B_g A_g = sum_i c_i B_i A_i exactly, at rank R = sum_i r_i (it grows with the number of terms). After
every combination `after_combine` folds that update into the frozen base weights and restarts the global
adapter as a fresh one (seeded per version, the combined head kept); clients get its first r directions.

Communication: the upload is the client's rank-r adapter; the download is the fresh adapter plus the
stacked updates of every version the client missed, since a real client must merge them into its own
copy of the base (capped at the dense size of the adapted layers, which it could download instead).

Under asynchronous schedules a client's update is a delta against the base it started from, and is
merged into the current base (as FLoRA's stacking assumes); the client trained on the base as it was when
its job was dispatched (engine.frozen_base), on every transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fedlora.aggregators.base import AGGREGATORS, Aggregator, BaseFolder
from fedlora.aggregators.support import check_distribute_rank, global_alpha, truncate_for_client
from fedlora.errors import ConfigError
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.lora.algebra import Term, check_terms, combine_extras
from fedlora.lora.factorized import F64
from fedlora.lora.init import fresh_adapter
from fedlora.seeding import torch_generator


@AGGREGATORS.register("flora")
class FLoRA(Aggregator):
    def __init__(self, rank: int, **options: Any):
        super().__init__(rank, **options)
        #: bytes of the stacked update of each version (index v-1 for version v): what clients download
        self.stacked_nbytes: list[int] = []

    def combine(self, terms: Sequence[Term]) -> Adapter:
        check_terms(terms)
        # terms without an update (zero weight, or B = 0 in every layer, e.g. a fresh adapter) add nothing:
        # leaving them out keeps the stacked rank, and what clients download, to the real updates
        live = [(float(w), ad) for w, ad in terms if float(w) != 0.0 and any(f.B.any() for f in ad.layers.values())]
        layers = {}
        for name, f0 in terms[0][1].layers.items():
            parts = [(w, ad.layers[name]) for w, ad in live]
            stacked_rank = sum(f.rank for _, f in parts)
            alpha = global_alpha(terms, name)
            s_g = alpha / stacked_rank if stacked_rank else 1.0
            if parts:
                B = torch.cat([f.B.to(F64) * (w * f.scaling / s_g) for w, f in parts], dim=1)
                A = torch.cat([f.A for _, f in parts], dim=0)
            else:
                B, A = torch.zeros(f0.d_out, 0, dtype=F64), torch.zeros(0, f0.d_in, dtype=f0.A.dtype)
            layers[name] = LoRAFactors(A.to(f0.A.dtype), B.to(f0.B.dtype), alpha)
        combined = Adapter(layers=layers, extras=combine_extras(terms))
        self.stacked_nbytes.append(sum(f.A.nbytes + f.B.nbytes for f in combined.layers.values()))
        self.last_diagnostics = {"rel_error": 0.0, "stacked_rank": float(combined.max_rank)}
        return combined

    def distribute(self, adapter: Adapter, rank: int, alpha: float) -> Adapter:
        check_distribute_rank(rank, self.rank, "flora")
        if adapter.max_rank > self.rank:
            raise ConfigError(
                f"aggregator flora: the global adapter has the stacked rank {adapter.max_rank}; it must be merged "
                "into the base weights (after_combine) before clients restart from fresh adapters"
            )
        return truncate_for_client(adapter, rank, alpha)

    def after_combine(self, combined: Adapter, terms: Sequence[Term], version: int, base: BaseFolder) -> Adapter:
        """Merge the stacked update into the base; the next version starts from a fresh adapter (head kept)."""
        base.fold({name: f.delta(F64) for name, f in combined.layers.items()})
        alpha = global_alpha(terms, next(iter(combined.layers)))
        shapes = {name: (f.d_out, f.d_in) for name, f in combined.layers.items()}
        generator = torch_generator(self.seed, "fresh-after-merge", version)
        return fresh_adapter(shapes, self.rank, alpha, generator, extras=combined.extras)

    def download_nbytes(self, start: Adapter, since_version: int, version: int) -> int:
        """The fresh adapter plus the stacked updates of versions since_version+1..version (or the dense delta)."""
        missed = sum(self.stacked_nbytes[since_version:version])
        dense = sum(f.d_out * f.d_in * f.B.element_size() for f in start.layers.values())
        return start.nbytes + min(missed, dense)

    def state_dict(self) -> dict[str, Any]:
        return {"stacked_nbytes": list(self.stacked_nbytes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stacked_nbytes = [int(x) for x in state.get("stacked_nbytes", [])]
