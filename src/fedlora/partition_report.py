"""Who holds what: a per-client table of a partition, and a figure of it.

One table, three renderings: rich (the `fedlora partition` command), partition.json and partition.md (the
CLI's output directory and every run directory), plus a PNG of per-client stacked bars (score bins, labels,
corrupted share, size). Per client: examples, label mix (after any corruption: what the client trains on),
mean and quartiles of token length, mean quality score, share of each score bin, and the corruption.

Bins are the partitioner's own (length or quality quantile bins); a partitioner without bins (iid, label,
quantity) is shown over token-length quartiles. Quality is the partitioner's own score when it skews quality,
else the `heuristic` score of the text pair (the one text of a single-text task), so every table has the same
columns. A partitioner may add per-client facts (`by_column`: the owners); own-data tasks name their labels;
clients under the partitioner's `min_size` are listed in the caption (`by_column` keeps them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    import numpy as np
    from rich.table import Table

    from fedlora.data.partitioners import Corruption, Partitioner, PartitionInputs

REPORT_BINS = 4  # length quartiles for partitioners without bins of their own
FILES = ("partition.json", "partition.md")
FIGURE = "partition.png"


@dataclass(frozen=True)
class PartitionReport:
    partition: str  # partitioner name
    bin_score: str | None  # what the bins are over, e.g. "length (tokens)"
    bin_edges: dict[str, list[float]]  # "all" or "label <y>" -> quantile edges
    quality_score: str | None  # e.g. "quality (heuristic)"
    classes: list[int]
    rows: list[dict[str, Any]]
    label_names: list[str] | None = None  # label_names[k]: the own-data label whose id is k
    min_size: int | None = None  # the partitioner's partition.min_size
    small_clients: list[int] = field(default_factory=list)  # clients holding fewer than min_size examples

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def has_noise(self) -> bool:
        return any("noise" in r for r in self.rows)

    @property
    def has_owners(self) -> bool:
        return any("owners" in r for r in self.rows)

    def headers(self) -> list[str]:
        names = self.label_names
        labels = "/".join(names[c] if names and c < len(names) else str(c) for c in self.classes)
        quality = "mean " + (self.quality_score or "quality").replace(" (", "\n(")
        bins = f"bin mix, low->high\nby {self.bin_score}" if self.bin_score else "bin mix"
        cols = ["client", "examples", f"label mix\n({labels})", "length\nmean", "length\nq1/q2/q3", quality, bins]
        if self.has_noise:
            cols.append("corrupted share\n(flipped/shuffled)")
        if self.has_owners:
            cols.append("owners")
        return cols

    def cells(self, row: dict[str, Any]) -> list[str]:
        def num(v: float | None, fmt: str = ".1f") -> str:
            return "-" if v is None else format(v, fmt)

        quart = row["length_quartiles"]
        out = [
            str(row["client"]),
            str(row["examples"]),
            "/".join(f"{s:.2f}" for s in row["label_share"]),
            num(row["length_mean"]),
            "-" if quart is None else "/".join(f"{q:.3g}" for q in quart),
            num(row["quality_mean"], ".3g"),
            "-" if row["bin_share"] is None else "/".join(f"{s:.2f}" for s in row["bin_share"]),
        ]
        if self.has_noise:
            nz = row.get("noise", {"share": 0.0, "flipped": 0, "shuffled": 0})
            out.append(f"{nz['share']:.2f} ({nz['flipped']}/{nz['shuffled']})")
        if self.has_owners:
            out.append(owners_cell(row.get("owners", [])))
        return out

    def caption(self) -> str:
        edges = "; ".join(f"{k}: {', '.join(f'{e:.4g}' for e in v)}" for k, v in self.bin_edges.items())
        total = sum(r["examples"] for r in self.rows)
        text = f"partition {self.partition}: {len(self.rows)} clients, {total} examples; bin edges {edges or '-'}"
        if self.small_clients:
            listed = ", ".join(str(c) for c in self.small_clients)
            text += f"; clients under partition.min_size={self.min_size} examples (kept, not dropped): {listed}"
        return text

    def to_markdown(self) -> str:
        head = [h.replace("\n", " ") for h in self.headers()]
        lines = [f"# Partition: {self.partition}", "", self.caption(), ""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(" --- " for _ in head) + "|")
        lines.extend("| " + " | ".join(self.cells(r)) + " |" for r in self.rows)
        return "\n".join(lines) + "\n"

    def to_rich(self) -> Table:
        from rich.table import Table

        table = Table(title=f"partition: {self.partition}", caption=self.caption())
        for i, h in enumerate(self.headers()):
            table.add_column(h, justify="right" if i < 2 else "left", no_wrap=True)
        for r in self.rows:
            table.add_row(*self.cells(r))
        return table

    def write(self, out_dir: str | Path, figure: bool = False) -> list[Path]:
        """partition.json and partition.md (and partition.png with `figure`) in `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / FILES[0], out / FILES[1]]
        paths[0].write_text(json.dumps(self.to_json(), indent=2) + "\n")
        paths[1].write_text(self.to_markdown())
        if figure:
            paths.append(plot_report(self, out / FIGURE))
        return paths


def owners_cell(owners: Sequence[str], width: int = 32) -> str:
    """One owner by name; several as their count and the first names that fit in `width` characters."""
    if len(owners) == 1:
        return str(owners[0])
    text = f"{len(owners)}: " + ", ".join(str(o) for o in owners)
    return text if len(text) <= width else text[: width - 3].rstrip(", ") + "..."


def _min_size(partitioner: Partitioner | None) -> int | None:
    """partition.min_size of the partitioner, or of the split under it (noise)."""
    for p in (partitioner, getattr(partitioner, "base", None)):
        size = getattr(getattr(p, "options", None), "min_size", None)
        if size is not None:
            return int(size)
    return None


def build_report(
    name: str,
    partitioner: Partitioner | None,
    inputs: PartitionInputs,
    parts: list[np.ndarray],
    corruption: Corruption | None = None,
    seed: int = 0,
    label_names: Sequence[str] | None = None,
) -> PartitionReport:
    """The per-client table of `parts` (the split of `inputs` by `partitioner`, with `corruption` applied)."""
    import numpy as np

    from fedlora.data.partitioners.binned import quantile_bins
    from fedlora.data.quality import heuristic_quality
    from fedlora.seeding import numpy_rng

    labels = np.array(inputs.labels, copy=True)
    if corruption:
        for i, y in corruption.labels.items():
            labels[i] = y
    classes = sorted(int(c) for c in np.unique(np.concatenate([np.asarray(inputs.labels), labels])))
    lengths = None if inputs.lengths is None else np.asarray(inputs.lengths, dtype=float)

    binning = partitioner.binning(inputs) if partitioner is not None else None
    if binning is not None:
        bin_of, nbins, bin_score, edges = binning.bin_of, binning.bins, binning.score, binning.edges
    elif lengths is not None:
        bin_of, e = quantile_bins(lengths, REPORT_BINS, numpy_rng(seed, "partition-report", "bins"))
        nbins, bin_score, edges = REPORT_BINS, "length (tokens)", {"all": [float(v) for v in e]}
    else:
        bin_of, nbins, bin_score, edges = None, 0, None, {}

    if binning is not None and binning.kind == "quality":
        quality, quality_score = binning.values, binning.score
    elif inputs.text_a is not None:
        texts = (
            inputs.text_a
            if inputs.text_b is None
            else (f"{a}\n{b}" for a, b in zip(inputs.text_a, inputs.text_b, strict=True))
        )
        quality, quality_score = np.array([heuristic_quality(t) for t in texts]), "quality (heuristic)"
    else:
        quality, quality_score = None, None

    noise = corruption.per_client(parts) if corruption is not None else None
    extra = partitioner.describe(inputs, parts) if partitioner is not None else None
    rows = []
    for c, idx in enumerate(parts):
        row: dict[str, Any] = {
            "client": c,
            "examples": len(idx),
            "label_share": [round(float(np.mean(labels[idx] == k)), 4) for k in classes],
            "length_mean": None,
            "length_quartiles": None,
            "quality_mean": None if quality is None else round(float(quality[idx].mean()), 4),
            "bin_share": None,
        }
        if lengths is not None:
            row["length_mean"] = round(float(lengths[idx].mean()), 2)
            row["length_quartiles"] = [float(q) for q in np.percentile(lengths[idx], [25, 50, 75])]
        if bin_of is not None:
            row["bin_share"] = [round(float(s), 4) for s in np.bincount(bin_of[idx], minlength=nbins) / len(idx)]
        if noise is not None:
            row["noise"] = noise[c]
        if extra is not None:
            row.update(extra[c])
        rows.append(row)
    min_size = _min_size(partitioner)
    small = [c for c, idx in enumerate(parts) if min_size is not None and len(idx) < min_size]
    names = list(label_names) if label_names is not None else None
    return PartitionReport(name, bin_score, edges, quality_score, classes, rows, names, min_size, small)


def plot_report(report: PartitionReport, path: str | Path) -> Path:
    """Per-client stacked bars: score-bin shares, label shares, corrupted share, and client sizes."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = report.rows
    x = np.arange(len(rows))
    panels: list[tuple[str, np.ndarray, list[str]]] = []
    if rows and rows[0]["bin_share"] is not None:
        shares = np.array([r["bin_share"] for r in rows])
        names = [
            f"bin {b}" + (" (low)" if b == 0 else " (high)" if b == shares.shape[1] - 1 else "")
            for b in range(shares.shape[1])
        ]
        panels.append((f"bins of {report.bin_score}", shares, names))
    names = report.label_names
    legend = [names[c] if names and c < len(names) else f"label {c}" for c in report.classes]
    panels.append(("labels", np.array([r["label_share"] for r in rows]), legend))
    if report.has_noise:
        corrupted = np.array([[r.get("noise", {}).get("share", 0.0)] for r in rows])
        panels.append(("corrupted share", corrupted, ["corrupted"]))

    fig = Figure(figsize=(4.0 * (len(panels) + 1), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels) + 1, squeeze=False)[0]
    cmap = colormaps["viridis"]
    for ax, (title, shares, names) in zip(axes, panels, strict=False):
        bottom = np.zeros(len(rows))
        for k, label in enumerate(names):
            color = cmap(k / max(1, len(names) - 1)) if len(names) > 1 else "tab:red"
            ax.bar(x, shares[:, k], bottom=bottom, color=color, label=label, width=0.8)
            bottom += shares[:, k]
        ax.set(title=title, xlabel="client", ylabel="share", ylim=(0, 1), xticks=x)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(4, len(names)), frameon=False)
    sizes = axes[-1]
    sizes.bar(x, [r["examples"] for r in rows], color="tab:gray", width=0.8)
    sizes.set(title="examples", xlabel="client", ylabel="examples", xticks=x)
    fig.suptitle(f"partition: {report.partition}")
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def partition_command(
    config: Path = typer.Argument(..., help="YAML experiment config"),
    set_: list[str] = typer.Option([], "--set", help="override a field: --set partition.alpha=0.1 (repeatable)"),
    out: Path | None = typer.Option(
        None, "--out", help="output directory (default: output.dir/partition-<task>-<partition>-s<seed>)"
    ),
) -> None:
    """Build the configured partition (tokenizer and data only, no model), print its per-client table, and
    write partition.json, partition.md and partition.png."""
    from rich.console import Console
    from rich.markup import escape

    from fedlora.config import load_config
    from fedlora.errors import FedLoraError
    from fedlora.experiment import partition_report, prepare_data

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)  # a piped table keeps one line per client
    try:
        cfg = load_config(config, set_)
        report = partition_report(prepare_data(cfg))
        target = out or Path(cfg.output.dir) / f"partition-{cfg.task.name}-{cfg.partition.name}-s{cfg.seed}"
        paths = report.write(target, figure=True)
    except FedLoraError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(report.to_rich())
    console.print("wrote " + ", ".join(str(p) for p in paths))
