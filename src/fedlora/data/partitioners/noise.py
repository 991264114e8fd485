"""Noisy data owners: a per-client share of examples has its label flipped or its text shuffled.

The split itself comes from any other partitioner (`base`, default iid), so noise composes with label,
quantity, length or quality skew. Then client c corrupts share s_c of its examples, chosen at random:

- `shares` given: s_c as listed, one per client;
- otherwise drawn: p ~ Dirichlet(alpha * 1_K) over clients and s_c = min(1, rate * K * p_c), so the shares
  average `rate` (less where a client is capped at 1); small alpha puts the noise on few clients.

Client c corrupts exactly round(s_c * |client c|) examples (half up). `corrupt`: `labels` flips the label
to another class (uniformly among the others; the other one for binary tasks), `text` shuffles the word
order of text_a and text_b (a shuffle that leaves a text unchanged is rotated by one word), `both` does
both to the same examples. Every draw comes from (seed, "partition-noise", ...), per client and example.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fedlora.data.partitioners.base import PARTITIONERS, Partitioner, PartitionInputs
from fedlora.data.partitioners.binned import Binning
from fedlora.data.partitioners.corruption import Corruption
from fedlora.errors import ConfigError
from fedlora.seeding import numpy_rng


class NoiseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: dict[str, Any] = Field(
        default_factory=lambda: {"name": "iid"}, description="the partition to add noise to: {name: ..., options}"
    )
    corrupt: Literal["labels", "text", "both"] = Field("labels", description="flip labels, shuffle text, or both")
    shares: list[float] | None = Field(None, description="corrupted share of each client (one per client); else drawn")
    rate: float = Field(0.2, ge=0, le=1, description="mean corrupted share when the shares are drawn")
    alpha: float = Field(1.0, gt=0, description="Dirichlet concentration of the noise over clients; small = few")

    @field_validator("shares")
    @classmethod
    def _check_shares(cls, shares: list[float] | None) -> list[float] | None:
        if any(not 0.0 <= s <= 1.0 for s in shares or []):
            raise ValueError(f"every share must lie in [0, 1], got {shares}")
        return shares

    @field_validator("base")
    @classmethod
    def _check_base(cls, base: dict[str, Any]) -> dict[str, Any]:
        options = dict(base)
        name = options.pop("name", None)
        if name is None or name == "noise" or name not in PARTITIONERS:
            choices = ", ".join(n for n in PARTITIONERS.names() if n != "noise")
            raise ValueError(f"name: {name!r} is not a partitioner to add noise to; choose one of: {choices}")
        try:
            PARTITIONERS.get(name).Options.model_validate(options)
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(detail) from None
        return base


@PARTITIONERS.register("noise")
class Noise(Partitioner):
    Options = NoiseOptions
    options: NoiseOptions

    def __init__(self, options: NoiseOptions, seed: int):
        super().__init__(options, seed)
        base = dict(options.base)
        cls = PARTITIONERS.get(base.pop("name"))
        self.base = cls(cls.Options.model_validate(base), seed)

    def split(self, inputs: PartitionInputs, num_clients: int) -> list[np.ndarray]:
        return self.base.split(inputs, num_clients)

    def binning(self, inputs: PartitionInputs) -> Binning | None:
        return self.base.binning(inputs)

    def needs_columns(self) -> tuple[str, ...]:
        return self.base.needs_columns()

    def describe(self, inputs: PartitionInputs, parts: list[np.ndarray]) -> list[dict[str, Any]] | None:
        return self.base.describe(inputs, parts)

    def shares(self, num_clients: int) -> np.ndarray:
        if self.options.shares is not None:
            if len(self.options.shares) != num_clients:
                raise ConfigError(
                    f"partition.shares has {len(self.options.shares)} entries but clients.count is {num_clients}; "
                    "list one share per client or drop shares to draw them"
                )
            return np.asarray(self.options.shares, dtype=float)
        p = numpy_rng(self.seed, "partition-noise", "shares").dirichlet(np.full(num_clients, self.options.alpha))
        return np.minimum(1.0, self.options.rate * num_clients * p)

    def corrupt(self, inputs: PartitionInputs, parts: list[np.ndarray]) -> Corruption:
        shares = self.shares(len(parts))
        flip = self.options.corrupt in ("labels", "both")
        shuffle = self.options.corrupt in ("text", "both")
        if shuffle and inputs.text_a is None:
            raise ConfigError("partition.corrupt=text needs the example texts (PartitionInputs.text_a/text_b)")
        classes = np.unique(inputs.labels)
        if flip and len(classes) < 2:
            raise ConfigError("partition.corrupt=labels needs at least two classes in the training labels")
        labels: dict[int, int] = {}
        texts: dict[int, tuple[str, str]] = {}
        for c, part in enumerate(parts):
            k = int(np.floor(shares[c] * len(part) + 0.5))
            rng = numpy_rng(self.seed, "partition-noise", "pick", c)
            for i in np.sort(rng.choice(part, size=k, replace=False)).tolist():
                if flip:
                    others = classes[classes != inputs.labels[i]]
                    labels[i] = int(numpy_rng(self.seed, "partition-noise", "flip", i).choice(others))
                if shuffle:
                    ex = numpy_rng(self.seed, "partition-noise", "shuffle", i)
                    b = None if inputs.text_b is None else shuffle_words(inputs.text_b[i], ex)
                    texts[i] = (shuffle_words(inputs.text_a[i], ex), b)
        return Corruption(labels=labels, texts=texts, shares=tuple(float(s) for s in shares))


def shuffle_words(text: str, rng: np.random.Generator) -> str:
    """The words of `text` in a random order that differs from the original whenever two words differ."""
    words = text.split()
    shuffled = [words[j] for j in rng.permutation(len(words))]
    if shuffled == words and len(set(words)) > 1:
        shuffled = words[1:] + words[:1]
    return " ".join(shuffled)
