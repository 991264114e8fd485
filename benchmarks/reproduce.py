"""Every study, one command: the learning-speed search, the quickstart and centralized targets, the HLoRA
(at the protocol and at the learning budget, with RTE's centralized reference), FedFa, differential-privacy
and CLLoRA (context skew) studies.

    python benchmarks/reproduce.py --scale cpu       # this machine's budgets (2 CPU cores: hours)
    python benchmarks/reproduce.py --scale full      # the configs' full budgets (one large GPU: minutes)
    python benchmarks/reproduce.py --scale tiny      # a smoke test of the whole chain on a tiny random model

Finished runs are recorded under docs/results/<study>/ and skipped, so an interrupted call continues where it
stopped; delete a record to rerun that cell. The tables are rebuilt from the records at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import REPO

HERE = Path(__file__).resolve().parent


def step(args: list[str]) -> None:
    print("$ python " + " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=REPO, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=("cpu", "full", "tiny"), default="cpu")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    seeds = [str(s) for s in args.seeds]
    if args.scale == "tiny":
        step([str(HERE / "hlora_study.py"), "--scale", "tiny", "--seeds", *seeds, "--jobs", str(args.jobs)])
        step([str(HERE / "fedfa_study.py"), "--scale", "tiny", "--seeds", *seeds, "--jobs", str(args.jobs)])
        step([str(HERE / "dp_study.py"), "--scale", "tiny", "--seeds", *seeds, "--jobs", str(args.jobs)])
        step([str(HERE / "cllora_study.py"), "--scale", "tiny", "--seeds", *seeds, "--jobs", str(args.jobs)])
        return
    if args.scale == "cpu":
        step([str(HERE / "learning_search.py")])
        step([str(HERE / "targets.py")])
    step([str(HERE / "hlora_study.py"), "--scale", args.scale, "--seeds", *seeds, "--jobs", str(args.jobs)])
    if args.scale == "cpu":  # issue 12: the budget at which federated runs learn here, and whether RTE learns
        step([str(HERE / "hlora_study.py"), "--scale", "learning", "--seeds", *seeds, "--jobs", str(args.jobs)])
        rte = ["--task", "rte", "--scale", "learning", "--methods", "centralized", "--seeds", *seeds]
        step([str(HERE / "hlora_study.py"), *rte, "--jobs", str(args.jobs)])
    if args.scale == "cpu":  # the FedFa protocol is sized for this CPU; on a GPU it runs the same in minutes
        step([str(HERE / "client_selection.py")])
        step([str(HERE / "fedfa_study.py"), "--seeds", *seeds, "--jobs", str(args.jobs)])
        step([str(HERE / "dp_cost.py")])  # issue 17: what central noise costs in product space
        step([str(HERE / "dp_study.py"), "--seeds", *seeds, "--jobs", str(args.jobs)])
        step([str(HERE / "cllora_study.py"), "--seeds", *seeds, "--jobs", str(args.jobs)])  # issue 14


if __name__ == "__main__":
    main()
