"""Curves of a dev metric against versions, virtual seconds and bytes: one line per method, a band over seeds.

Why a band: seeds of one method evaluate at different virtual times and byte counts (stragglers differ per
seed), so their curves are interpolated onto a common grid, over the range every seed covers, and the
figure shows the mean with a +-1 standard deviation band. Uses matplotlib's object API (no pyplot), so it
never touches a display or global figure state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fedlora.report import Group

#: x axes: history key -> axis label.
AXES = {"version": "global version", "virtual_s": "virtual seconds", "bytes": "bytes sent (up + down)"}


def curve(history: Sequence[dict[str, Any]], x: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, metric) of one run's evaluations, sorted by x; points without the metric are skipped."""
    pts = [(float(p[x]), float(p["metrics"][metric])) for p in history if metric in p.get("metrics", {}) and x in p]
    pts.sort(key=lambda t: t[0])
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def band(curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = 200) -> tuple[np.ndarray, ...]:
    """(grid, mean, std) of curves interpolated on a common grid over the x range all of them cover.

    std is 0 for a single curve. With no overlap (or single-point curves) the grid is the first curve's x.
    """
    curves = [c for c in curves if len(c[0])]
    if not curves:
        return np.array([]), np.array([]), np.array([])
    lo = max(float(xs[0]) for xs, _ in curves)
    hi = min(float(xs[-1]) for xs, _ in curves)
    grid = np.linspace(lo, hi, points) if hi > lo else curves[0][0]
    ys = np.stack([np.interp(grid, xs, vs) for xs, vs in curves])
    std = ys.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(grid)
    return grid, ys.mean(axis=0), std


def plot_curves(groups: Sequence[Group], out: Path, metric: str) -> list[Path]:
    """One PNG per x axis under `out`: `{metric}_vs_{x}.png`; returns the paths written."""
    from matplotlib.figure import Figure

    written = []
    for x, xlabel in AXES.items():
        fig = Figure(figsize=(6.4, 4.2), dpi=120)
        ax = fig.add_subplot()
        for i, g in enumerate(groups):
            color = f"C{i % 10}"
            curves = [curve(r.summary.get("history") or [], x, metric) for r in g.runs]
            grid, mean, std = band(curves)
            if not len(grid):
                continue
            n = len([c for c in curves if len(c[0])])
            ax.plot(grid, mean, color=color, label=f"{g.label} (n={n})", marker="o" if len(grid) < 3 else None)
            if n > 1:
                ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"dev {metric}")
        ax.grid(True, alpha=0.3)
        if groups:
            ax.legend(fontsize="small", loc="best")
        fig.tight_layout()
        path = out / f"{metric}_vs_{x}.png"
        fig.savefig(path)
        written.append(path)
    return written
