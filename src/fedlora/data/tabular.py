"""A user's own data as named columns: one local file, a directory of split files, or a Hugging Face dataset.

Files are read with `datasets` (the same builders `load_dataset("csv"/"json"/"parquet")` uses), so a file
that works with `datasets` works here, and the hub route is the same call with a dataset name. Choices:

- TSV is read with quoting off, the TSV convention (a tab cannot occur inside a field, so nothing needs
  quoting) and what GLUE's files need: their sentences contain bare quotes.
- CSV/TSV cells keep their text: "NA", "null" or "None" are words in a support ticket, not missing values
  (pandas' default would turn them into NaN).
- Local files are read into memory through a throw-away cache directory: a user's data is not copied into
  the `datasets` cache in their home directory on every run.
- Every failure is one line that names the file (or hub split), the column when there is one, and the fix.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedlora.errors import DataError
from fedlora.seeding import numpy_rng

# file suffix -> (datasets builder, its options, the format's name in messages)
FORMATS: dict[str, tuple[str, dict[str, Any], str]] = {
    ".csv": ("csv", {"keep_default_na": False}, "CSV"),
    ".tsv": ("csv", {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "keep_default_na": False}, "TSV"),
    ".json": ("json", {}, "JSON"),
    ".jsonl": ("json", {}, "JSON Lines"),
    ".parquet": ("parquet", {}, "Parquet"),
}
SUFFIXES = ", ".join(FORMATS)


@dataclass(frozen=True)
class Table:
    """One split: its rows as parallel columns, and where they came from (named in every message)."""

    source: str  # a file path, or hub:<dataset>[/<config>]:<split>
    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def column(self, name: str, field: str) -> list[Any]:
        """The values of column `name`, which config field `field` names; a DataError says how to fix a miss."""
        if name not in self.columns:
            have = ", ".join(self.columns) or "none"
            raise DataError(
                f"{self.source}: no column {name!r} (columns: {have}); set {field} to one of them, or add the column"
            )
        return self.columns[name]

    def filled(self, name: str, field: str) -> list[str]:
        """Column `name` as texts (`cell_key`), every row filled in (an owner column, a label column)."""
        out = []
        for row, v in enumerate(self.column(name, field), start=1):
            key = cell_key(v)
            if key is None:
                raise DataError(
                    f"{self.source}: row {row} has no value in column {name!r} ({field}); fill it in or drop the row"
                )
            out.append(key)
        return out

    def take(self, indices: Sequence[int] | np.ndarray) -> Table:
        idx = [int(i) for i in indices]
        return Table(self.source, {k: [v[i] for i in idx] for k, v in self.columns.items()})


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """`datasets` logs a failed parse at ERROR before raising it; the user gets our one line instead."""
    import datasets

    level = datasets.logging.get_verbosity()
    bars = datasets.utils.are_progress_bars_disabled()
    datasets.logging.set_verbosity(logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
        if not bars:
            datasets.enable_progress_bars()


def _reason(exc: BaseException) -> str:
    """The innermost message of a `datasets` failure (DatasetGenerationError wraps the parser's own error)."""
    inner = exc
    while inner.__cause__ is not None or (inner.__context__ is not None and not inner.__suppress_context__):
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    text = " ".join(str(inner).split()) or type(inner).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def cell_key(value: Any) -> str | None:
    """A cell as the text it is recorded under (a label, an owner); None for a missing one (null, NaN, empty).

    Integral floats lose their ".0": pandas reads an integer column with gaps as floats.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def natural_order(keys: Sequence[str]) -> list[str]:
    """The sorted distinct keys: numerically when all are integers (1..10 stars stay in order), else as text."""
    distinct = set(keys)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def read_file(path: str | Path) -> Table:
    """Every row of one CSV, TSV, JSON, JSON Lines or Parquet file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file; check task.data_dir")
    suffix = p.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{p}: unknown file type {p.suffix or '(none)'!r}; save it as one of {SUFFIXES}")
    builder, options, fmt = FORMATS[suffix]
    if p.stat().st_size == 0:
        raise DataError(f"{p} is empty; it needs a header (or keys) and at least one row")
    import datasets

    with _quiet_datasets(), tempfile.TemporaryDirectory(prefix="fedlora-datasets-") as cache:
        try:
            ds = datasets.load_dataset(
                builder, data_files=str(p), split="train", cache_dir=cache, keep_in_memory=True, **options
            )
        except Exception as exc:
            reason = _reason(exc)
            if "corresponds to no data" in reason:
                raise DataError(f"{p} has a header but no rows; add rows, or point task.data_dir elsewhere") from None
            raise DataError(
                f"{p}: cannot read it as {fmt} ({reason}); fix the file there, or save it as one of {SUFFIXES}"
            ) from None
        columns = ds.to_dict()
    stray = [c for c in columns if c.startswith("__index_level_") or c.startswith("Unnamed: ")]
    if stray:
        delim = "tab" if suffix == ".tsv" else "comma"
        raise DataError(
            f"{p}: rows have more fields than the header (a {delim} inside an unquoted text?); "
            f"quote such fields (CSV) or remove the extra {delim}s"
        )
    table = Table(str(p), columns)
    if len(table) == 0:
        raise DataError(f"{p} has no rows; add rows, or point task.data_dir elsewhere")
    return table


def split_file(folder: Path, split: str, field: str) -> Path:
    """The file of split `split` in `folder`: `<split>.<suffix>` for a known suffix, or the file named `split`."""
    named = folder / split
    if named.is_file():
        return named
    found = [folder / f"{split}{s}" for s in FORMATS if (folder / f"{split}{s}").is_file()]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise DataError(
            f"{folder}: several files for split {split!r} ({', '.join(f.name for f in found)}); keep one, or "
            f"set {field} to the file's full name"
        )
    present = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in FORMATS)
    raise DataError(
        f"{folder}: no file for split {split!r} (expected {split}.csv/.tsv/.json/.jsonl/.parquet; found: "
        f"{', '.join(present) or 'no data files'}); set {field} to one of them"
    )


def read_hub(dataset: str, config: str | None, split: str, revision: str | None = None) -> Table:
    """One split of a Hugging Face hub dataset (needs network access, or the dataset in the local cache)."""
    import datasets

    where = f"hub:{dataset}{'/' + config if config else ''}:{split}"
    with _quiet_datasets():
        try:
            ds = datasets.load_dataset(dataset, config, split=split, revision=revision)
        except Exception as exc:
            raise DataError(
                f"{where}: cannot load it ({_reason(exc)}); check task.hub.dataset, task.hub.config and "
                "task.splits, or download the data and set task.data_dir to the files"
            ) from None
    table = Table(where, ds.to_dict())
    if len(table) == 0:
        raise DataError(f"{where} has no rows; name another split in task.splits")
    return table


@dataclass(frozen=True)
class SplitRequest:
    """Where a task's rows are and which are training and validation rows (the config's task.* fields)."""

    data_dir: str | None
    hub_dataset: str | None
    hub_config: str | None
    hub_revision: str | None
    train: str
    dev: str | None
    dev_share: float | None
    holdout_seed: int


def load_splits(req: SplitRequest) -> tuple[Table, Table]:
    """(training rows, validation rows) from a file, a directory of split files, or the hub.

    A single file has no named splits, so its validation rows are a held-out share (task.splits.dev_share),
    as is any source whose validation split is null. The hold-out is seeded by task.splits.seed, not by
    the run's seed: every run of a seed grid validates on the same rows.
    """
    if req.hub_dataset is not None:
        train = read_hub(req.hub_dataset, req.hub_config, req.train, req.hub_revision)
        dev = read_hub(req.hub_dataset, req.hub_config, req.dev, req.hub_revision) if req.dev else None
    else:
        assert req.data_dir is not None
        root = Path(req.data_dir).expanduser()
        if root.is_file():
            if req.dev_share is None:
                raise DataError(
                    f"task.data_dir: {root} is one file, which holds no validation split; set "
                    "task.splits.dev_share (e.g. 0.2) to hold out a share of it, or give a directory with train "
                    "and validation files"
                )
            train, dev = read_file(root), None
        elif root.is_dir():
            train = read_file(split_file(root, req.train, "task.splits.train"))
            dev = read_file(split_file(root, req.dev, "task.splits.dev")) if req.dev else None
        else:
            raise DataError(f"task.data_dir: {root} does not exist; give a data file or a directory of split files")
    if dev is not None and req.dev_share is not None:
        raise DataError(
            f"task.splits.dev_share={req.dev_share} holds validation rows out of {train.source}, but {dev.source} "
            "is a validation split already; set task.splits.dev_share: null, or task.splits.dev: null"
        )
    if dev is None:
        if req.dev_share is None:
            raise DataError(
                f"task.splits.dev is null, so {train.source} needs a held-out share; set task.splits.dev_share "
                "(e.g. 0.2), or name the validation split in task.splits.dev"
            )
        return hold_out(train, req.dev_share, req.holdout_seed)
    return train, dev


def hold_out(table: Table, share: float, seed: int) -> tuple[Table, Table]:
    """(the rest, a seeded share of the rows) of `table`, each in file order; both keep at least one row."""
    n = len(table)
    k = round(share * n)
    if n < 2 or not 1 <= k <= n - 1:
        raise DataError(
            f"{table.source}: task.splits.dev_share={share} of {n} rows leaves an empty split; add rows or "
            "choose a share that keeps at least one row on each side"
        )
    order = numpy_rng(seed, "dev-share").permutation(n)
    dev = np.sort(order[:k])
    train = np.sort(order[k:])
    return (
        Table(f"{table.source} (without the held-out share)", table.take(train).columns),
        Table(f"{table.source} (held-out share {share})", table.take(dev).columns),
    )


def fingerprint(req: SplitRequest) -> dict[str, str | None]:
    """Where the rows are read from and a SHA-256 of the files read (as glue.data_fingerprint for GLUE).

    Recorded in run.json, so a resume can refuse other data. A hub dataset gives no local files to hash:
    its source is recorded, its fingerprint is None.
    """
    import hashlib

    if req.hub_dataset is not None:
        where = f"hub:{req.hub_dataset}{'/' + req.hub_config if req.hub_config else ''}"
        return {"source": where + (f"@{req.hub_revision}" if req.hub_revision else ""), "sha256": None}
    assert req.data_dir is not None
    root = Path(req.data_dir).expanduser()
    if root.is_file():
        files = [("train", root)]
    elif root.is_dir():
        files = [("train", split_file(root, req.train, "task.splits.train"))]
        if req.dev:
            files.append(("dev", split_file(root, req.dev, "task.splits.dev")))
    else:
        raise DataError(f"task.data_dir: {root} does not exist; give a data file or a directory of split files")
    digest = hashlib.sha256()
    for split, path in files:
        digest.update(f"{split}\0{path.name}\0".encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return {"source": str(root.resolve()), "sha256": digest.hexdigest()}
