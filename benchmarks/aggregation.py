"""Aggregation cost: HLoRA's factored path against FlexLoRA's dense path, on RoBERTa-large-shaped layers.

RoBERTa-large adapts 24 layers x {query, value}: 48 layers of 1024 x 1024. Clients hold LoRA adapters of
ranks drawn uniformly from 2..16 (float32, as clients send them); one aggregation combines all of them
through the public API, `get_aggregator(name, rank=16).combine(terms)`, for 10, 100 and 1000 clients.
Methods: `hlora` with default options (auto: exact QR path while sum r_i is small, randomized range finder
beyond; the randomized sketches run in the adapters' float32), `hlora-f64` (the same with float64
sketches), `hlora-exact` (always the QR path, optional) and `flexlora` (dense float64 sum and full SVD).

Each client count runs in its own subprocess (fresh memory; glibc told to return large blocks to the OS),
where the methods alternate, `--repeats` times each; the table shows the best time. Peak memory is the
peak resident set size during the aggregation minus the resident size before it (Linux: VmHWM is reset
through /proc/self/clear_refs before each measurement), i.e. the working memory beyond the inputs.

All 48 layers are measured at every client count by default (1000 clients' inputs take ~3.5 GB). A smaller
run may measure a subset (`--layers`, or automatically under `--max-input-mb`): layers are independent and
processed one after another, so the time is then extrapolated linearly to 48 layers and the peak memory
(per layer) is not scaled; extrapolated rows are marked in the table and the JSON. `error_vs_optimal` is
hlora's ||M - approx||_F^2 over the optimal rank-16 error (the exact truncated SVD), worst of the first
`--error-layers` layers.

    python benchmarks/aggregation.py --quick        # 4 layers, 10 and 100 clients
    python benchmarks/aggregation.py                # 48 layers (subsampled where needed), 10/100/1000 clients
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS

D = 1024
FULL_LAYERS = 48
MEAN_RANK = 9.0  # ranks uniform in 2..16


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(
    clients: int, layers: int, methods: list[str], repeats: int, seed: int, threads: int | None, error_layers: int = 0
) -> dict:
    """Runs inside the subprocess: build the clients' adapters once, then time each method."""
    import torch

    from fedlora import Adapter, LoRAFactors, get_aggregator

    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    ranks = torch.randint(2, 17, (clients,), generator=g).tolist()
    names = [f"layer.{i // 2}.attention.self.{'query' if i % 2 == 0 else 'value'}" for i in range(layers)]
    terms = []
    sizes = torch.rand(clients, generator=g) + 0.5
    weights = (sizes / sizes.sum()).tolist()
    for w, r in zip(weights, ranks, strict=True):
        factors = {
            n: LoRAFactors(torch.randn(r, D, generator=g) / D**0.5, torch.randn(D, r, generator=g) * 0.01, 16.0)
            for n in names
        }
        terms.append((w, Adapter(layers=factors)))
    out = {"clients": clients, "layers_measured": layers, "sum_ranks": int(sum(ranks)), "methods": {}}
    spec = {
        "hlora": ("hlora", {}),
        "hlora-f64": ("hlora", {"sketch_precision": "float64"}),
        "hlora-exact": ("hlora", {"method": "exact"}),
        "flexlora": ("flexlora", {}),
    }
    warm = [(w, Adapter(layers={names[0]: ad.layers[names[0]]})) for w, ad in terms]
    for method in methods:  # untimed: first-call allocations and kernel set-up stay out of time and peak
        name, options = spec[method]
        get_aggregator(name, rank=16, **options).combine(warm)
    for _ in range(repeats):
        for method in methods:
            name, options = spec[method]
            agg = get_aggregator(name, rank=16, **options)
            peak_ok = _reset_peak()
            before = _rss_kb("VmRSS")
            t0 = time.perf_counter()
            agg.combine(terms)
            seconds = time.perf_counter() - t0
            peak = _rss_kb("VmHWM") - before if peak_ok else None
            entry = out["methods"].setdefault(method, {"seconds": [], "peak_mb": [], "diagnostics": {}})
            entry["seconds"].append(seconds)
            if peak is not None:
                entry["peak_mb"].append(peak / 1024)
            entry["diagnostics"] = agg.last_diagnostics
    if error_layers:  # error against the optimal rank-16 error (the exact truncated SVD), on the first layers
        from fedlora.lora.factorized import dense_product_sum

        sub = [(w, Adapter(layers={n: ad.layers[n] for n in names[:error_layers]})) for w, ad in terms]
        for method in methods:
            if method == "flexlora":
                continue
            name, options = spec[method]
            got = get_aggregator(name, rank=16, **options).combine(sub)
            ratios = []
            for n in names[:error_layers]:
                pterms = [(w * f.scaling, f.B, f.A) for w, ad in sub for f in [ad.layers[n]]]
                M = dense_product_sum(pterms)
                optimal = float(torch.linalg.svdvals(M)[16:].square().sum())
                ratios.append(float((M - got.delta(n).double()).square().sum()) / optimal)
            out["methods"][method]["error_vs_optimal"] = max(ratios)
    return out


def run_child(args: argparse.Namespace, clients: int, layers: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    cmd = [
        sys.executable,
        __file__,
        "--child",
        json.dumps(
            {
                "clients": clients,
                "layers": layers,
                "methods": args.methods,
                "repeats": args.repeats,
                "seed": args.seed,
                "threads": args.threads,
                "error_layers": args.error_layers,
            }
        ),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child for {clients} clients failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def layers_for(clients: int, args: argparse.Namespace) -> int:
    """Layers to measure: --layers, lowered so the clients' float32 inputs stay under --max-input-mb."""
    per_layer_mb = clients * MEAN_RANK * 2 * D * 4 / 2**20
    fit = max(1, int(args.max_input_mb // per_layer_mb))
    return max(1, min(args.layers, fit, FULL_LAYERS))


def summarise(raw: list[dict], methods: list[str]) -> list[dict]:
    rows = []
    for r in raw:
        scale = FULL_LAYERS / r["layers_measured"]
        row = {
            "clients": r["clients"],
            "sum_ranks_per_layer": r["sum_ranks"],
            "layers_measured": r["layers_measured"],
            "extrapolated": r["layers_measured"] != FULL_LAYERS,
        }
        for m in methods:
            e = r["methods"][m]
            best = min(e["seconds"])
            row[m] = {
                "seconds_measured": round(best, 4),
                "seconds_48_layers": round(best * scale, 3),
                "all_seconds_measured": [round(s, 4) for s in e["seconds"]],
                "peak_mb": round(max(e["peak_mb"]), 1) if e["peak_mb"] else None,
                "energy_lost": e["diagnostics"].get("energy_lost"),
                "randomized_layers": e["diagnostics"].get("randomized_layers", 0.0),
                "error_vs_optimal": e.get("error_vs_optimal"),
            }
        if "flexlora" in methods:  # measured side by side on the same layers: no extrapolation in the ratio
            for m in methods:
                if m != "flexlora":
                    row[f"speedup_{m}"] = round(row["flexlora"]["seconds_measured"] / row[m]["seconds_measured"], 1)
        rows.append(row)
    if "hlora" in methods:
        for prev, cur in itertools.pairwise(rows):
            cur["hlora_time_growth"] = round(cur["hlora"]["seconds_48_layers"] / prev["hlora"]["seconds_48_layers"], 2)
            cur["client_growth"] = round(cur["clients"] / prev["clients"], 2)
    return rows


def print_table(rows: list[dict], methods: list[str], meta: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"One aggregation, {FULL_LAYERS} layers of {D}x{D}, r_max 16, client ranks 2..16")
    table.add_column("clients", justify="right")
    table.add_column("sum r_i", justify="right")
    table.add_column("layers run", justify="right")
    for m in methods:
        table.add_column(f"{m} s (48 layers)", justify="right")
        table.add_column(f"{m} peak MB", justify="right")
    speedups = [m for m in methods if m != "flexlora"] if "flexlora" in methods else []
    for m in speedups:
        table.add_column(f"flexlora / {m}", justify="right")
    table.add_column("hlora growth", justify="right")
    table.add_column("hlora err / optimal", justify="right")
    for row in rows:
        cells = [
            str(row["clients"]),
            str(row["sum_ranks_per_layer"]),
            f"{row['layers_measured']}" + ("*" if row["extrapolated"] else ""),
        ]
        for m in methods:
            cells += [
                f"{row[m]['seconds_48_layers']:.3f}",
                f"{row[m]['peak_mb']:.0f}" if row[m]["peak_mb"] is not None else "-",
            ]
        cells += [f"{row[f'speedup_{m}']:.1f}x" for m in speedups]
        growth = (
            f"x{row['hlora_time_growth']} (clients x{row['client_growth']:g})" if "hlora_time_growth" in row else "-"
        )
        cells.append(growth)
        ratio = row["hlora"]["error_vs_optimal"] if "hlora" in row else None
        cells.append(f"{ratio:.4f}" if ratio is not None else "-")
        table.add_row(*cells)
    console = Console(width=220)
    console.print(table)
    if any(r["extrapolated"] for r in rows):
        console.print(
            "* measured on fewer layers and extrapolated linearly to 48 (layers are independent and run one "
            "after another); the speedup column compares the measured layers directly. Peak MB is per layer "
            "working memory beyond the inputs and is not scaled."
        )
    console.print(f"torch threads: {meta['torch_threads']}; repeats: {meta['repeats']} (best shown); {meta['machine']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--layers", type=int, default=FULL_LAYERS, help="layers to measure (extrapolated to 48)")
    parser.add_argument("--max-input-mb", type=float, default=8192.0, help="fewer layers when inputs exceed this")
    parser.add_argument(
        "--error-layers", type=int, default=2, help="layers on which hlora's error is compared to the optimal one"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["hlora", "hlora-f64", "flexlora"],
        choices=["hlora", "hlora-f64", "hlora-exact", "flexlora"],
        help="hlora: default options (auto; float32 sketches for float32 adapters); hlora-f64: sketches in float64",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="4 layers, 10 and 100 clients")
    parser.add_argument("--out", type=Path, default=RESULTS / "aggregation.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure(**spec)))
        return
    if args.quick:
        args.layers, args.clients = min(args.layers, 4), [c for c in args.clients if c <= 100] or [10, 100]
        if args.out == RESULTS / "aggregation.json":
            args.out = RESULTS / "aggregation_quick.json"
    import torch

    t0 = time.perf_counter()
    raw = [run_child(args, c, layers_for(c, args)) for c in args.clients]
    rows = summarise(raw, args.methods)
    meta = {
        "torch_threads": args.threads or torch.get_num_threads(),
        "repeats": args.repeats,
        "machine": f"{os.cpu_count()} CPUs visible, torch {torch.__version__}",
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "layer_shape": [D, D],
        "full_layers": FULL_LAYERS,
        "r_max": 16,
        "client_ranks": "uniform integers 2..16 (seeded)",
        "peak_memory": "peak RSS during combine minus RSS before it (VmHWM reset via /proc/self/clear_refs)",
        "extrapolation": "seconds_48_layers = seconds_measured * 48 / layers_measured",
    }
    print_table(rows, args.methods, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
