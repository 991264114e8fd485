"""RoLoRA (Chen, Guo, Ju, Dalal, Zhu, Khisti, 2025, "Robust Federated Finetuning of LLMs via Alternating
Optimization of LoRA", NeurIPS): train B and A in alternate versions, so averaging is exact.

In a job dispatched at version v a client trains one factor and keeps the other as sent: `first` (B by
default) in even versions, the other in odd ones. The frozen factor is then the same in every term of a
synchronous round, and averaging the factors as FedIT does is the exact average of the updates
(homogeneous ranks, factors at one alpha):

    B-version:  B_g = sum_i w_i B_i,   s B_g A = sum_i w_i s B_i A
    A-version:  A_g = sum_i w_i A_i,   s B A_g = sum_i w_i s B A_i

B first because LoRA starts with B = 0, where A gets no gradient (RoLoRA and LoRA-A2 alternate from B too);
`first: A` starts with A. A client uploads only the factor it trained (and the head); it downloads both.
Under asynchronous schedules a combination can hold updates of jobs started at different versions, whose
frozen factors differ: the average is then FedIT's, inexact by the logged `rel_error`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fedlora.aggregators.base import AGGREGATORS
from fedlora.aggregators.fedit import FedIT
from fedlora.jobs import Trains
from fedlora.lora.adapter import Adapter


class RoLoRAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first: Literal["B", "A"] = Field("B", description="the factor trained in even versions (0, 2, ...)")


@AGGREGATORS.register("rolora")
class RoLoRA(FedIT):
    Options = RoLoRAOptions
    options: RoLoRAOptions

    def trains(self, version: int) -> Trains:
        other: Trains = "A" if self.options.first == "B" else "B"
        return self.options.first if version % 2 == 0 else other

    def upload_nbytes(self, start: Adapter, trains: Trains) -> int:
        """The trained factor of every layer, and the head."""
        sent = 0
        for f in start.layers.values():
            sent += f.A.numel() * f.A.element_size() if "A" in trains else 0
            sent += f.B.numel() * f.B.element_size() if "B" in trains else 0
        return sent + sum(t.numel() * t.element_size() for t in start.extras.values())
