"""FedSA-LoRA (Guo, Zeng, Wang, Fan, Wang, Qu, 2025, "Selective Aggregation for Low-Rank Adaptation in Federated
Learning", ICLR): only A is shared; every client keeps its own B.

A learns what the clients have in common and B what is particular to each, so the server averages A only
and a client always continues from its own B (homogeneous ranks):

    A_g = sum_i w_i A_i,     client i starts each job from (A_g, B_i), B_i its own, zero before its first job.

The client's B is per-client state (the `keep` and `personalize` hooks): fedlora holds it for the client,
checkpoints it and resumes it exactly, and a job carries it to its client, but it is never combined and no
client ever receives another's. Bytes count what FedSA-LoRA moves: A (and the head) each way.

Evaluation, said plainly: the *global* model evaluated on the dev set is the shared A_g with the weighted
average of the clients' B's, B_g = sum_i w_i B_i (the same combination of the B's the clients hold), a
model no FedSA-LoRA client ever trains from; each client's own (A_g, B_i) is evaluated on its local
validation split when there are local splits (eval.local_val_share), in evaluation points' `personal`.
"""

from __future__ import annotations

import torch

from fedlora.aggregators.base import AGGREGATORS
from fedlora.aggregators.fedit import FedIT
from fedlora.jobs import Trains
from fedlora.lora.adapter import Adapter, LoRAFactors


@AGGREGATORS.register("fedsa")
class FedSALoRA(FedIT):
    # combine is FedIT's: A_g (shared) and B_g (only the global model evaluated has it)

    def keep(self, trained: Adapter) -> Adapter:
        """The client keeps its trained B (held as the trained adapter; only B is read back)."""
        return trained

    def personalize(self, received: Adapter, kept: Adapter | None) -> Adapter:
        """The shared A and head from the server, the client's own B (zero before its first job)."""
        layers = {}
        for name, f in received.layers.items():
            B = kept.layers[name].B.clone() if kept is not None else torch.zeros_like(f.B)
            layers[name] = LoRAFactors(f.A, B, f.alpha)
        return Adapter(layers=layers, extras=received.extras)

    def upload_nbytes(self, start: Adapter, trains: Trains) -> int:
        return _shared_nbytes(start)

    def download_nbytes(self, start: Adapter, since_version: int, version: int) -> int:
        return _shared_nbytes(start)


def _shared_nbytes(adapter: Adapter) -> int:
    """A and the head: what a FedSA-LoRA client exchanges with the server (B stays on the client)."""
    lora_A = sum(f.A.numel() * f.A.element_size() for f in adapter.layers.values())
    return lora_A + sum(t.numel() * t.element_size() for t in adapter.extras.values())
