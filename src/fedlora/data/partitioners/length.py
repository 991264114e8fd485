"""Context-length skew: clients draw their mix of token-length quantile bins from Dirichlet(alpha).

One data owner holds long documents, another short messages. The score is the tokenised length of each
example (`PartitionInputs.lengths`, after truncation to task.max_length); the bins, mixes and the assignment
are those of `binned` (quantile bins, per-client Dirichlet mixes, optional `within_label` / `label_alpha`).
"""

from __future__ import annotations

import numpy as np

from fedlora.data.partitioners.base import PARTITIONERS, PartitionInputs
from fedlora.data.partitioners.binned import BinnedSkew
from fedlora.errors import ConfigError


@PARTITIONERS.register("length")
class LengthSkew(BinnedSkew):
    kind = "length"

    def score(self, inputs: PartitionInputs) -> tuple[str, np.ndarray]:
        if inputs.lengths is None:
            raise ConfigError("partition.name=length needs the token length of every example (PartitionInputs.lengths)")
        return "length (tokens)", np.asarray(inputs.lengths, dtype=float)
