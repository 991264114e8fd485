"""The issue's targets on this machine: centralized LoRA >= 0.82 in <= 5 minutes of training, and the
quickstart (10 federated clients) >= 0.80 accuracy and >= 0.86 F1 with the whole command in <= 10 minutes.

Runs the shipped configs unchanged (seed 0) and records them under docs/results/targets/; the wall time of the
quickstart is that of the whole `fedlora run` process (start-up, data, model, training, evaluation, export).

    python benchmarks/targets.py [--only centralized quickstart]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, data_dir
from study import DOCS_RESULTS

RUNS = {
    "centralized": "configs/centralized_mrpc.yaml",
    "quickstart": "configs/quickstart.yaml",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=list(RUNS))
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "targets")
    args = ap.parse_args()
    out = DOCS_RESULTS / "targets"
    out.mkdir(parents=True, exist_ok=True)
    fedlora = Path(sys.executable).parent / "fedlora"
    for name in args.only:
        rec = out / name
        if (rec / "summary.json").is_file():
            print(f"[targets] {name}: recorded")
            continue
        run_dir = args.runs_dir / name
        cmd = [str(fedlora), "run", RUNS[name], "--out", str(run_dir), "--set", "output.progress=false"]
        env = {**os.environ, "FEDLORA_DATA_DIR": data_dir()}
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, env=env, check=True)
        wall = time.perf_counter() - t0
        summary = json.loads((run_dir / "summary.json").read_text())
        summary.pop("run_dir", None)
        summary["command"] = f"fedlora run {RUNS[name]}"
        summary["command_wall_seconds"] = round(wall, 1)
        rec.mkdir(parents=True, exist_ok=True)
        (rec / "config.yaml").write_text((run_dir / "config.yaml").read_text())
        (rec / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    for name in RUNS:
        p = out / name / "summary.json"
        if p.is_file():
            s = json.loads(p.read_text())
            m, b = s["final"]["metrics"], s["best"]["metrics"]
            print(
                f"{name}: final accuracy {m['accuracy']:.4f} F1 {m['f1']:.4f} (best {b['accuracy']:.4f}); "
                f"training+eval {s['timing']['real_seconds']:.0f} s, whole command {s['command_wall_seconds']:.0f} s"
            )


if __name__ == "__main__":
    main()
