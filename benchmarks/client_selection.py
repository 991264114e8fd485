"""Who trains under each schedule's client selection: the confound behind the old FedFa-under-skew result.

FedFa's and FedAsync's worker loop (`schedule.next_client: same`) re-dispatches the client that just finished;
with 5 of 20 clients training at once only the five dispatched first ever train. This runs the real server and
schedules on the test suite's fake world (each adapter a number, each job free to compute) with the protocol's
client speeds (configs/protocol/mrpc_async.yaml: Pareto(1), seeds 0-2) and job size (4 steps), 100 jobs, and
counts the distinct clients with a result and the spread of results per client.

    python benchmarks/client_selection.py          # prints the table, writes benchmarks/results/client_selection.json
"""

from __future__ import annotations

import json
import sys

from common import REPO, RESULTS

sys.path.insert(0, str(REPO))

from tests.engine.fakes import BATCH, make_server

from fedlora.clients.speeds import draw_speeds
from fedlora.config import load_config
from fedlora.engine.server import StopRules
from fedlora.engine.statistics import summarize
from fedlora.schedules.fedasync import FedAsync, FedAsyncOptions
from fedlora.schedules.fedavg import FedAvg, FedAvgOptions
from fedlora.schedules.fedbuff import FedBuff, FedBuffOptions
from fedlora.schedules.fedfa import FedFa, FedFaOptions

JOBS, STEPS, CLIENTS = 100, 4, 20
VARIANTS = {
    "fedavg (5 per round)": lambda s: FedAvg(FedAvgOptions(per_round=5), CLIENTS, s),
    "fedbuff (random)": lambda s: FedBuff(FedBuffOptions(concurrency=5, buffer_size=5), CLIENTS, s),
    "fedasync (random, now the default)": lambda s: FedAsync(FedAsyncOptions(concurrency=5), CLIENTS, s),
    "fedasync (same, the old default)": lambda s: FedAsync(
        FedAsyncOptions(concurrency=5, next_client="same"), CLIENTS, s
    ),
    "fedfa (random, now the default)": lambda s: FedFa(FedFaOptions(concurrency=5), CLIENTS, s),
    "fedfa (same, the old default)": lambda s: FedFa(FedFaOptions(concurrency=5, next_client="same"), CLIENTS, s),
}


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    cfg = load_config(REPO / "configs/protocol/mrpc_async.yaml", [])
    rows = []
    for seed in (0, 1, 2):
        speeds = [float(x) for x in draw_speeds(cfg.clients.speeds, CLIENTS, seed)]
        for name, make in VARIANTS.items():
            server = make_server(make(seed), speeds=speeds, steps=STEPS, stop=StopRules(samples=JOBS * STEPS * BATCH))
            server.run()
            s = summarize(server)
            p = s["participation"]
            rows.append(
                {
                    "seed": seed,
                    "schedule": name,
                    "distinct": p["distinct"],
                    "min": p["min_arrived"],
                    "max": p["max_arrived"],
                    "arrived": p["arrived"],
                    "virtual_seconds": s["totals"]["virtual_seconds"],
                }
            )
    table = Table(title=f"clients with a result after {JOBS} jobs (20 clients, 5 at once, Pareto(1) speeds)")
    for col in ("seed", "schedule", "clients with a result", "results per client (min-max)", "virtual s"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["seed"]), r["schedule"], str(r["distinct"]), f"{r['min']}-{r['max']}", f"{r['virtual_seconds']:.0f}"
        )
    Console().print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "client_selection.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
