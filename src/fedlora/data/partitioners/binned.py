"""Skew over quantile bins of a per-example score: the machinery behind `length` and `quality`.

A subclass only says which score to bin (`score`); this module does the rest, deterministically for a seed
(every draw comes from fedlora.seeding with purpose `partition-<name>`).

1. Bins. Examples are ranked by score, ties broken by a seeded random key, and the example of rank r
   (0..n-1) goes to bin floor(r * B / (n - 1)), the last rank to bin B-1. Every example of bin b therefore
   scores between the b/B and (b+1)/B quantiles (numpy's default, linear interpolation), which are the
   reported edges, and bins hold n/B examples give or take 2, even when scores tie (token lengths do).
   With `within_label`, bins are cut separately inside each label.
2. Mixes. Client c draws its bin mix p_c ~ Dirichlet(alpha * 1_B): small alpha = each client one bin,
   large alpha = every client near-uniform over the bins. With `label_alpha` it also draws a label mix
   q_c ~ Dirichlet(label_alpha * 1_L) (label skew composed with bin skew); with only `within_label`, q_c is
   the data's label distribution, i.e. the bin skew applies inside every label. Cells are the bins, or the
   (label, bin) pairs when labels take part; client c's target for cell (y, b) is q_c[y] * p_c[b].
   Target shares below 1e-6 count as zero.
3. Counts. Iterative proportional fitting scales the clients x cells target matrix until every cell hands
   out exactly its examples and all clients get n/K examples, as far as the zero pattern allows; it always
   ends on the cell step, so every example is assigned. Zero targets stay zero: a client whose mix is one
   bin (alpha -> 0) gets examples of that bin only, and client sizes then differ. Counts are rounded
   within each cell by largest remainder.
4. Deal. Each cell's examples are shuffled and cut into consecutive chunks of those counts.

A draw is redrawn (derived seeds, up to `max_tries`) when a non-empty cell has no client (possible for tiny
alpha) or a client would get fewer than `min_size` examples. If no draw covers every cell, the first draw
that meets `min_size` is used: an uncovered cell's examples then go mostly to the clients short of examples.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from fedlora.data.partitioners.base import (
    Partitioner,
    PartitionInputs,
    PartitionOptions,
    check_partition,
    require_enough,
)
from fedlora.errors import ConfigError
from fedlora.seeding import numpy_rng

ZERO_SHARE = 1e-6  # target shares below this count as "no examples of this cell"
IPF_ITERATIONS = 500


class BinnedOptions(PartitionOptions):
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration of each client's bin mix; small = strong skew")
    bins: int = Field(4, ge=2, le=100, description="number of quantile bins of the score")
    within_label: bool = Field(False, description="cut the bins inside each label and skew the bins inside each label")
    label_alpha: float | None = Field(
        None, gt=0, description="also skew labels: each client's label mix ~ Dirichlet(label_alpha); null = no"
    )
    max_tries: int = Field(100, ge=1, description="redraws when a bin gets no client or a client too few examples")


@dataclass(frozen=True)
class Binning:
    """The bins a skew partitioner works on, kept for reports."""

    kind: Literal["length", "quality"]
    score: str  # what was binned, in words, e.g. "length (tokens)" or "quality (heuristic)"
    values: np.ndarray  # the score of every example
    bin_of: np.ndarray  # its bin, 0..bins-1 (within its label when the bins are cut per label)
    bins: int
    edges: dict[str, list[float]]  # "all" (or "label <y>") -> the bins+1 quantile edges


def quantile_bins(values: np.ndarray, bins: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bin of every value (rank-based, ties broken by `rng`) and the bins+1 quantile edges (see step 1)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(bins + 1)
    edges = np.quantile(values, np.linspace(0.0, 1.0, bins + 1))
    order = np.lexsort((rng.random(n), values))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    bin_of = np.minimum(bins - 1, rank * bins // max(n - 1, 1))
    return bin_of.astype(np.int64), edges


def fit_counts(target: np.ndarray, supply: np.ndarray, iterations: int = IPF_ITERATIONS) -> np.ndarray:
    """Integer clients x cells counts: cell sums equal `supply`, client sums near-equal, zeros of `target` kept.

    `target` has a row per client (its wanted share of each cell). A cell with examples but no positive
    target is opened to every client, so that all examples are assigned.
    """
    x = np.where(target >= ZERO_SHARE * target.sum(axis=1, keepdims=True), target, 0.0).astype(float)
    supply = np.asarray(supply, dtype=float)
    orphan = (x.sum(axis=0) == 0) & (supply > 0)
    x[:, orphan] = 1.0
    per_client = supply.sum() / len(x)
    for _ in range(iterations):
        col = x.sum(axis=0)
        x *= np.divide(supply, col, out=np.zeros_like(col), where=col > 0)
        rows = x.sum(axis=1)
        if np.abs(rows - per_client).max() < 0.5:
            break
        x *= np.divide(per_client, rows, out=np.ones_like(rows), where=rows > 0)[:, None]
    else:
        col = x.sum(axis=0)
        x *= np.divide(supply, col, out=np.zeros_like(col), where=col > 0)
    return _round_columns(x, supply.astype(np.int64))


def _round_columns(x: np.ndarray, supply: np.ndarray) -> np.ndarray:
    """Largest-remainder rounding of every column to its exact integer sum; zero entries stay zero."""
    counts = np.floor(x).astype(np.int64)
    for g in range(x.shape[1]):
        missing = int(supply[g] - counts[:, g].sum())
        if missing > 0:
            frac = np.where(x[:, g] > 0, x[:, g] - counts[:, g], -1.0)
            counts[np.argsort(-frac, kind="stable")[:missing], g] += 1
    return counts


class BinnedSkew(Partitioner):
    """Clients skewed over quantile bins of `score(inputs)`; see the module docstring for the algorithm."""

    Options = BinnedOptions
    options: BinnedOptions
    kind: ClassVar[Literal["length", "quality"]]

    def __init__(self, options: BinnedOptions, seed: int):
        super().__init__(options, seed)
        self._cached: tuple[PartitionInputs, Binning] | None = None

    @property
    def purpose(self) -> str:
        return f"partition-{self.kind}"

    @abstractmethod
    def score(self, inputs: PartitionInputs) -> tuple[str, np.ndarray]:
        """(what the score is, in words; one score per example)."""

    def binning(self, inputs: PartitionInputs) -> Binning:
        if self._cached is not None and self._cached[0] is inputs:
            return self._cached[1]
        name, values = self.score(inputs)
        values = np.asarray(values, dtype=float)
        if values.shape != (len(inputs),) or not np.isfinite(values).all():
            raise ConfigError(
                f"partition.name={self.kind}: the {name} score must be one finite number per example "
                f"(got shape {values.shape}, {int((~np.isfinite(values)).sum())} non-finite)"
            )
        bins = self.options.bins
        rng = numpy_rng(self.seed, self.purpose, "ties")
        if self.options.within_label:
            bin_of = np.zeros(len(values), dtype=np.int64)
            edges = {}
            labels = np.asarray(inputs.labels)
            for y in np.unique(labels):
                members = np.flatnonzero(labels == y)
                bin_of[members], e = quantile_bins(values[members], bins, rng)
                edges[f"label {y}"] = [float(v) for v in e]
        else:
            bin_of, e = quantile_bins(values, bins, rng)
            edges = {"all": [float(v) for v in e]}
        result = Binning(self.kind, name, values, bin_of, bins, edges)
        self._cached = (inputs, result)
        return result

    def _cells(self, inputs: PartitionInputs, binning: Binning) -> tuple[np.ndarray, np.ndarray, bool]:
        """Cell of every example, the label index of every example, and whether labels take part."""
        _, label_index = np.unique(inputs.labels, return_inverse=True)
        by_label = self.options.within_label or self.options.label_alpha is not None
        cells = label_index * binning.bins + binning.bin_of if by_label else binning.bin_of
        return cells.astype(np.int64), label_index.astype(np.int64), by_label

    def _target(self, num_clients: int, label_index: np.ndarray, by_label: bool, attempt: int) -> np.ndarray:
        rng = numpy_rng(self.seed, self.purpose, "mix", attempt)
        mix = rng.dirichlet(np.full(self.options.bins, self.options.alpha), size=num_clients)
        if not by_label:
            return mix
        num_labels = int(label_index.max()) + 1
        if self.options.label_alpha is not None:
            labels = rng.dirichlet(np.full(num_labels, self.options.label_alpha), size=num_clients)
        else:
            freq = np.bincount(label_index, minlength=num_labels) / len(label_index)
            labels = np.tile(freq, (num_clients, 1))
        return np.einsum("cy,cb->cyb", labels, mix).reshape(num_clients, -1)

    def split(self, inputs: PartitionInputs, num_clients: int) -> list[np.ndarray]:
        n = len(inputs)
        m = self.options.min_size
        require_enough(n, num_clients, m)
        cells, label_index, by_label = self._cells(inputs, self.binning(inputs))
        num_cells = self.options.bins * (int(label_index.max()) + 1 if by_label else 1)
        supply = np.bincount(cells, minlength=num_cells)
        fallback = None
        for attempt in range(self.options.max_tries):
            target = self._target(num_clients, label_index, by_label, attempt)
            kept = target >= ZERO_SHARE * target.sum(axis=1, keepdims=True)
            covered = bool(kept[:, supply > 0].any(axis=0).all())
            if not covered and fallback is not None:
                continue
            counts = fit_counts(target, supply)
            if counts.sum(axis=1).min() < m:
                continue
            if covered:
                return self._deal(cells, counts, n)
            fallback = counts
        if fallback is not None:
            return self._deal(cells, fallback, n)
        raise ConfigError(
            f"partition.alpha={self.options.alpha}: no draw in {self.options.max_tries} tries gave every client "
            f"partition.min_size={m} examples; raise alpha, lower min_size or clients.count, or raise max_tries"
        )

    def _deal(self, cells: np.ndarray, counts: np.ndarray, n: int) -> list[np.ndarray]:
        parts: list[list[np.ndarray]] = [[] for _ in range(len(counts))]
        for g in range(counts.shape[1]):
            members = numpy_rng(self.seed, self.purpose, "deal", g).permutation(np.flatnonzero(cells == g))
            for client, chunk in enumerate(np.split(members, np.cumsum(counts[:, g])[:-1])):
                parts[client].append(chunk)
        merged = [np.concatenate(p) if p else np.zeros(0, dtype=np.int64) for p in parts]
        return check_partition(merged, n, self.options.min_size)
