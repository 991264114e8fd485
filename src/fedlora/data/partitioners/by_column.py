"""The natural split: the data already says who owns each row (a user, a hospital, a device).

`column` names the owner column of the training data (task.name text_classification or instruction).

- `group: each`: every distinct owner is one client; clients.count must equal the number of owners.
  Client i is the i-th owner in sorted order (numerically when every owner is an integer), so ids do not
  depend on row order.
- `group: balanced`: owners are grouped into clients.count clients. The rule: shuffle the owners with
  the seed (purpose `partition-by_column`), order them by size, largest first (stable, so equal sizes keep
  the shuffled order), and give each to the client that holds the fewest examples so far, the lowest id
  on ties (greedy longest-processing-time packing: client sizes end up as equal as whole owners allow).
  An owner is never split across clients.

Real owners can be tiny. A client under `min_size` examples is kept, not dropped: the partition table lists
it (`fedlora partition`, partition.json/.md of every run). Each row of that table also names the
client's owners.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from fedlora.data.partitioners.base import PARTITIONERS, Partitioner, PartitionInputs, PartitionOptions, check_partition
from fedlora.data.tabular import natural_order
from fedlora.errors import ConfigError
from fedlora.seeding import numpy_rng


class ByColumnOptions(PartitionOptions):
    column: str = Field(description="the training data's owner column (e.g. user_id); each row belongs to its owner")
    group: Literal["each", "balanced"] = Field(
        "each",
        description="each: one client per distinct owner (clients.count = the number of owners); balanced: "
        "owners grouped into clients.count clients, largest first onto the smallest client (seeded order)",
    )
    min_size: int = Field(
        2, ge=1, description="clients with fewer examples are reported in the partition table (kept, not dropped)"
    )


@PARTITIONERS.register("by_column")
class ByColumn(Partitioner):
    Options = ByColumnOptions
    options: ByColumnOptions

    def needs_columns(self) -> tuple[str, ...]:
        return (self.options.column,)

    def owners(self, inputs: PartitionInputs) -> list[str]:
        column = self.options.column
        if inputs.columns is None or column not in inputs.columns:
            raise ConfigError(
                f"partition.name=by_column reads the owner column {column!r} of your own data; GLUE tasks have "
                "none: use task.name text_classification or instruction on a file with that column"
            )
        return [str(v) for v in inputs.columns[column]]

    def assignment(self, inputs: PartitionInputs, num_clients: int) -> dict[str, int]:
        """Owner -> client, by the module docstring's rule."""
        owners = self.owners(inputs)
        order = natural_order(owners)
        column, k = self.options.column, len(order)
        if self.options.group == "each":
            if k != num_clients:
                raise ConfigError(
                    f"partition.column={column!r} has {k} distinct owners but clients.count={num_clients}; set "
                    f"clients.count={k} (one client per owner), or partition.group: balanced to group the owners "
                    f"into {num_clients} clients"
                )
            return {o: i for i, o in enumerate(order)}
        if k < num_clients:
            raise ConfigError(
                f"partition.column={column!r} has only {k} distinct owners for clients.count={num_clients}, and an "
                f"owner is never split; set clients.count to at most {k}"
            )
        size = dict(zip(*np.unique(owners, return_counts=True), strict=True))
        shuffled = [order[j] for j in numpy_rng(self.seed, "partition-by_column").permutation(k)]
        shuffled.sort(key=lambda o: -size[o])
        load = [0] * num_clients
        out = {}
        for o in shuffled:
            c = min(range(num_clients), key=lambda i: (load[i], i))
            out[o] = c
            load[c] += int(size[o])
        return out

    def split(self, inputs: PartitionInputs, num_clients: int) -> list[np.ndarray]:
        owner_to_client = self.assignment(inputs, num_clients)
        client = np.array([owner_to_client[o] for o in self.owners(inputs)], dtype=np.int64)
        parts = [np.flatnonzero(client == c) for c in range(num_clients)]
        return check_partition(parts, len(inputs), 1)  # small clients are reported (describe), not refused

    def describe(self, inputs: PartitionInputs, parts: list[np.ndarray]) -> list[dict[str, Any]]:
        owners = np.array(self.owners(inputs), dtype=object)
        return [{"owners": natural_order(list(owners[p]))} for p in parts]
