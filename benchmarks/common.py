"""What every benchmark script shares: where the GLUE data is, and how a figure is written.

The scripts run as `python benchmarks/NAME.py`, so this folder is on sys.path and `import common` finds this file.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def data_dir() -> str:
    """FEDLORA_DATA_DIR, else the shared GLUE copy beside the repository."""
    return os.environ.get("FEDLORA_DATA_DIR") or str(REPO.parent / "shared" / "data" / "glue")


def save_figure(fig, path: Path, dpi: int = 120, outside: bool = False) -> None:
    """Lay out, write (creating the folder) and close a matplotlib figure; `outside`: keep artists placed
    outside the axes (a legend below the panels) in the image."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if outside else None)
    plt.close(fig)
