"""Quantity skew: client sizes drawn from Dirichlet(alpha) over clients; labels stay mixed.

Every client first gets `min_size` examples so no client is empty; the rest is split by the drawn
proportions.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from fedlora.data.partitioners.base import (
    PARTITIONERS,
    Partitioner,
    PartitionInputs,
    PartitionOptions,
    check_partition,
    require_enough,
)
from fedlora.seeding import numpy_rng


class QuantityOptions(PartitionOptions):
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration of client sizes; small = very unequal")


@PARTITIONERS.register("quantity")
class Quantity(Partitioner):
    Options = QuantityOptions
    options: QuantityOptions

    def split(self, inputs: PartitionInputs, num_clients: int) -> list[np.ndarray]:
        n = len(inputs)
        m = self.options.min_size
        require_enough(n, num_clients, m)
        rng = numpy_rng(self.seed, "partition-quantity")
        perm = rng.permutation(n)
        props = rng.dirichlet(np.full(num_clients, self.options.alpha))
        extra = n - m * num_clients
        sizes = np.floor(props * extra).astype(int)
        sizes[: extra - sizes.sum()] += 1  # hand out the rounding remainder deterministically
        sizes += m
        cuts = np.cumsum(sizes)[:-1]
        return check_partition(list(np.split(perm, cuts)), n, m)
