"""Label skew: each class is spread over clients by proportions drawn from Dirichlet(alpha).

The standard construction (Hsu et al., 2019). Small alpha gives clients dominated by one label; large
alpha approaches IID. Draws are repeated (with derived seeds) until every client has `min_size` examples.
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
from fedlora.errors import ConfigError
from fedlora.seeding import numpy_rng


class LabelOptions(PartitionOptions):
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration; small = strong label skew")
    max_tries: int = Field(1000, ge=1)


def dirichlet_split(
    groups: list[np.ndarray], num_clients: int, alpha: float, rng: np.random.Generator
) -> list[list[int]]:
    """Spread each group's (already shuffled) members over clients by Dirichlet(alpha) proportions."""
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    for members in groups:
        if len(members) == 0:
            continue
        props = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(props) * len(members)).astype(int)[:-1]
        for client, chunk in enumerate(np.split(members, cuts)):
            parts[client].extend(int(i) for i in chunk)
    return parts


@PARTITIONERS.register("label")
class LabelDirichlet(Partitioner):
    Options = LabelOptions
    options: LabelOptions

    def split(self, inputs: PartitionInputs, num_clients: int) -> list[np.ndarray]:
        n = len(inputs)
        require_enough(n, num_clients, self.options.min_size)
        labels = np.asarray(inputs.labels)
        for attempt in range(self.options.max_tries):
            rng = numpy_rng(self.seed, "partition-label", attempt)
            groups = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
            parts = dirichlet_split(groups, num_clients, self.options.alpha, rng)
            if min(len(p) for p in parts) >= self.options.min_size:
                return check_partition([np.array(p, dtype=np.int64) for p in parts], n, self.options.min_size)
        raise ConfigError(
            f"partition.alpha={self.options.alpha}: no draw in {self.options.max_tries} tries gave every client "
            f"partition.min_size={self.options.min_size} examples; raise alpha or lower min_size/clients.count"
        )
