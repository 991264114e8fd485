"""What central noise costs in product space: the dense noised sum M + Z and its full SVD, against HLoRA's
factored combination (QR of the stacked factors, SVD of the small core), per layer.

HLoRA never forms the d_out x d_in matrix; Gaussian noise on the sum is dense, so under central DP the
product-space methods must (fedlora.privacy.mechanism.noised_product_combine). Each measurement runs in a
fresh subprocess: CPU seconds (process time, so a busy machine does not inflate it) of one combination and
the growth of the peak resident memory it causes.

    python benchmarks/dp_cost.py                      # the table; JSON in benchmarks/results/dp_cost.json
    python benchmarks/dp_cost.py --dims 384 768 --clients 5
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from common import RESULTS

RANKS = (2, 4, 8, 16)


def measure(d: int, clients: int, method: str, repeat: int) -> dict:
    import torch

    from fedlora.aggregators.hlora import HLoRA
    from fedlora.lora.adapter import Adapter
    from fedlora.privacy.mechanism import noised_product_combine

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    terms = []
    for i in range(clients):
        r = RANKS[i % len(RANKS)]
        ad = Adapter.from_factors(
            {"q": (torch.randn(r, d, generator=g), torch.randn(d, r, generator=g) * 0.01)}, alpha=16.0
        )
        terms.append((1.0 / clients, ad))
    agg = HLoRA(rank=16, method="exact")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.process_time()
    for k in range(repeat):
        if method == "hlora":
            agg.combine(terms)
        else:
            noised_product_combine(terms, 16, std=1e-3, seed=0, version=k)
    cpu = (time.process_time() - t0) / repeat
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base  # KiB on Linux
    return {"d": d, "clients": clients, "method": method, "cpu_s": cpu, "peak_rss_mib": peak / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 768, 1024, 2048])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--one", nargs=2, metavar=("D", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.clients, args.one[1], args.repeat)))
        return
    rows = []
    for d in args.dims:
        for method in ("hlora", "dp_dense"):
            cmd = [sys.executable, __file__, "--one", str(d), method, "--clients", str(args.clients)]
            out = subprocess.run([*cmd, "--repeat", str(args.repeat)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"one layer d x d, {args.clients} clients of ranks {RANKS} (sum r = {sum_ranks(args.clients)}), r_max 16")
    print("| d | hlora CPU s | dense noise + SVD CPU s | slowdown | dense M (MiB) | peak RSS growth (MiB) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for d in args.dims:
        h = next(r for r in rows if r["d"] == d and r["method"] == "hlora")
        n = next(r for r in rows if r["d"] == d and r["method"] == "dp_dense")
        print(
            f"| {d} | {h['cpu_s']:.4f} | {n['cpu_s']:.4f} | {n['cpu_s'] / max(h['cpu_s'], 1e-9):.0f}x | "
            f"{d * d * 8 / 2**20:.1f} | {h['peak_rss_mib']:.1f} -> {n['peak_rss_mib']:.1f} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dp_cost.json").write_text(json.dumps({"clients": args.clients, "rows": rows}, indent=1))


def sum_ranks(clients: int) -> int:
    return sum(RANKS[i % len(RANKS)] for i in range(clients))


if __name__ == "__main__":
    main()
