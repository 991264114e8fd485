"""IID: a seeded shuffle cut into near-equal parts (the control every skew is compared with)."""

from __future__ import annotations

import numpy as np

from fedlora.data.partitioners.base import PARTITIONERS, Partitioner, PartitionInputs, check_partition, require_enough
from fedlora.seeding import numpy_rng


@PARTITIONERS.register("iid")
class IID(Partitioner):
    def split(self, inputs: PartitionInputs, num_clients: int) -> list[np.ndarray]:
        n = len(inputs)
        require_enough(n, num_clients, self.options.min_size)
        perm = numpy_rng(self.seed, "partition-iid").permutation(n)
        return check_partition(list(np.array_split(perm, num_clients)), n, self.options.min_size)
