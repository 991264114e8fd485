"""Client-side noise (`privacy.where: client`): a client clips and noises its own update before it leaves.

Runs inside local training (`training.local.train_local`), so on the client's own machine in a Flower
deployment and identically in-process and in Flower's simulation. The update is clipped in factor space,
the only space a client can send: ||[A - A_0, B - B_0, head - head_0]|| <= C over the factors its job trains
(the others stay exactly as sent), then N(0, (sigma C)^2) is added to every coordinate of those factors and
of the head. Draws derive from (run seed, "dp-client-noise", client, client job) only.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedlora.lora.adapter import Adapter
from fedlora.privacy.mechanism import add_noise, clip_adapter, clip_scale, factor_norm, noise_std

CLIENT_NOISE = "dp-client-noise"


@dataclass(frozen=True)
class ClientNoise:
    clip_norm: float
    noise_multiplier: float
    seed: int


def privatize(
    trained: Adapter, start: Adapter, trains: str, noise: ClientNoise, client: int, client_job: int
) -> tuple[Adapter, float]:
    """(the clipped and noised update a client sends, its norm before clipping)."""
    norm = factor_norm(trained, start, rank=max(start.max_rank, 1))
    clipped = clip_adapter(trained, start, clip_scale(norm, noise.clip_norm), trains)
    std = noise_std(noise.noise_multiplier, noise.clip_norm)
    return add_noise(clipped, std, [trains], noise.seed, CLIENT_NOISE, client, client_job), norm
