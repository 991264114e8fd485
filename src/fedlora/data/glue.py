"""GLUE MRPC, RTE and QQP through one loader: a GLUE-format directory or the Hugging Face hub.

A directory may be the GLUE root (holding MRPC/, RTE/, QQP/) or a task folder itself. Files are read with
quoting off (MRPC sentences contain bare quotes), exactly as GLUE's own loaders do.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from fedlora.errors import DataError


@dataclass(frozen=True)
class TaskSpec:
    name: str
    folder: str
    hub_config: str
    columns: tuple[str, str, str]  # text_a, text_b, label in the TSV header
    hub_columns: tuple[str, str]
    label_map: dict[str, int]
    metrics: tuple[str, ...]


TASKS: dict[str, TaskSpec] = {
    "mrpc": TaskSpec(
        "mrpc",
        "MRPC",
        "mrpc",
        ("#1 String", "#2 String", "Quality"),
        ("sentence1", "sentence2"),
        {"0": 0, "1": 1},
        ("accuracy", "f1"),
    ),
    "rte": TaskSpec(
        "rte",
        "RTE",
        "rte",
        ("sentence1", "sentence2", "label"),
        ("sentence1", "sentence2"),
        {"entailment": 0, "not_entailment": 1},
        ("accuracy",),
    ),
    "qqp": TaskSpec(
        "qqp",
        "QQP",
        "qqp",
        ("question1", "question2", "is_duplicate"),
        ("question1", "question2"),
        {"0": 0, "1": 1},
        ("accuracy", "f1"),
    ),
}
SPLIT_FILES = {"train": "train.tsv", "dev": "dev.tsv"}
HUB_SPLITS = {"train": "train", "dev": "validation"}
HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class TextPairs:
    """One split of a sentence-pair task: parallel lists."""

    text_a: list[str]
    text_b: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> TextPairs:
        idx = [int(i) for i in indices]
        return TextPairs([self.text_a[i] for i in idx], [self.text_b[i] for i in idx], [self.labels[i] for i in idx])


def task_spec(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"task.name: unknown GLUE task {name!r}; choose one of: {', '.join(sorted(TASKS))}") from None


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """config `task.data_dir`, else env FEDLORA_DATA_DIR, else None (the hub)."""
    value = data_dir if data_dir not in (None, "") else os.environ.get("FEDLORA_DATA_DIR") or None
    return Path(value).expanduser() if value is not None else None


def _task_folder(root: Path, spec: TaskSpec) -> Path:
    for candidate in (root / spec.folder, root / spec.folder.lower(), root):
        if (candidate / SPLIT_FILES["train"]).is_file():
            return candidate
    raise DataError(
        f"task.data_dir: no {spec.folder}/train.tsv under {root} (looked in {root / spec.folder} and {root}); "
        f"point task.data_dir (or FEDLORA_DATA_DIR) at a GLUE root holding {spec.folder}/ or at the task folder"
    )


def read_glue_tsv(path: Path, spec: TaskSpec) -> TextPairs:
    if not path.is_file():
        raise DataError(
            f"missing file {path}: expected a GLUE {spec.folder} split with header {' | '.join(spec.columns)}"
        )
    try:
        return _read_tsv(path, spec)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _not_utf8(path: Path) -> DataError:
    """Where the first byte that is not UTF-8 sits (the text reader only knows its buffer, not the line)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return DataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); GLUE files are UTF-8: re-save it as "
            "UTF-8 (e.g. iconv -f latin1 -t utf-8) or download the task again"
        )
    return DataError(f"{path}: not UTF-8 text; re-save it as UTF-8")  # pragma: no cover - decoded above


def _read_tsv(path: Path, spec: TaskSpec) -> TextPairs:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path} is empty; expected a header with columns {', '.join(spec.columns)}") from None
        missing = [c for c in spec.columns if c not in header]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {missing}; expected a GLUE {spec.folder} header containing "
                f"{', '.join(spec.columns)} (got: {', '.join(header)})"
            )
        ia, ib, il = (header.index(c) for c in spec.columns)
        a, b, y = [], [], []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) <= max(ia, ib, il):
                raise DataError(f"{path}:{lineno}: {len(row)} fields, header has {len(header)}")
            label = row[il].strip()
            if label not in spec.label_map:
                raise DataError(f"{path}:{lineno}: label {label!r} not one of {sorted(spec.label_map)}")
            a.append(row[ia])
            b.append(row[ib])
            y.append(spec.label_map[label])
    if not y:
        raise DataError(f"{path} has a header but no rows")
    return TextPairs(a, b, y)


def _load_hub(spec: TaskSpec, split: str) -> TextPairs:
    import datasets  # imported lazily: only the hub route needs it

    try:
        ds = datasets.load_dataset(HUB_DATASET, spec.hub_config, split=HUB_SPLITS[split])
    except Exception as exc:  # the hub is unreachable offline: say how to use a local copy instead
        raise DataError(
            f"could not load {HUB_DATASET}/{spec.hub_config} from the Hugging Face hub ({type(exc).__name__}: {exc}); "
            "set task.data_dir or FEDLORA_DATA_DIR to a local GLUE directory"
        ) from exc
    ca, cb = spec.hub_columns
    return TextPairs(list(ds[ca]), list(ds[cb]), [int(v) for v in ds["label"]])


def data_fingerprint(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, str | None]:
    """Where task `name`'s data is read from, and a SHA-256 of its train and dev files.

    Recorded in run.json, so `--resume` can refuse to continue a run on other data (another
    FEDLORA_DATA_DIR) instead of finishing it with numbers that belong to neither. The hub gives no
    local files to hash: its source is recorded, its fingerprint is None.
    """
    spec = task_spec(name)
    root = resolve_data_dir(data_dir)
    if root is None:
        return {"source": f"hub:{HUB_DATASET}/{spec.hub_config}", "sha256": None}
    if not root.is_dir():
        raise DataError(f"task.data_dir: {root} is not a directory")
    folder = _task_folder(root, spec)
    return {"source": str(folder.resolve()), "sha256": _hash_files([(s, folder / f) for s, f in SPLIT_FILES.items()])}


def _hash_files(named: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    for name, path in named:
        digest.update(f"{name}\0".encode())
        if path.is_file():
            with path.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def load_glue(name: str, split: str, data_dir: str | os.PathLike | None = None) -> TextPairs:
    """Load `split` ('train' or 'dev') of GLUE task `name`."""
    spec = task_spec(name)
    if split not in SPLIT_FILES:
        raise DataError(f"split must be one of {sorted(SPLIT_FILES)}, got {split!r}")
    root = resolve_data_dir(data_dir)
    if root is None:
        return _load_hub(spec, split)
    if not root.is_dir():
        raise DataError(f"task.data_dir: {root} is not a directory")
    return read_glue_tsv(_task_folder(root, spec) / SPLIT_FILES[split], spec)
