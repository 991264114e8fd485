"""configs/context/: the CLLoRA grid (task x skew kind x alpha x model) loads, validates, and is complete."""

import itertools
from pathlib import Path

from fedlora.config import load_config

from .conftest import REPO

CONTEXT = REPO / "configs" / "context"
ALPHAS = {"0.1": 0.1, "1": 1.0, "100": 100.0}


def budget(cfg) -> tuple:
    """What must be equal within a model size: samples trained and the data they come from."""
    t = cfg.task
    return (
        cfg.stop.versions,
        cfg.clients.count,
        cfg.training.local_steps,
        cfg.training.batch_size,
        t.max_length,
        t.train_limit,
        t.dev_limit,
        cfg.eval.local_val_share,
    )


def test_every_context_config_loads_and_the_grid_is_complete_with_one_budget_per_model():
    configs = {p.stem: load_config(p) for p in sorted(CONTEXT.glob("*.yaml"))}
    expected = {
        f"{m}_{t}_{k}_a{a}"
        for m, t, k, a in itertools.product(("minilm", "smollm2"), ("mrpc", "rte"), ("length", "quality"), ALPHAS)
    }
    assert set(configs) == expected
    for name, cfg in configs.items():
        model, task, kind, alpha = name.split("_")
        assert (cfg.task.name, cfg.partition.name, cfg.model.name) == (task, kind, model)
        assert cfg.partition.options["alpha"] == ALPHAS[alpha[1:]]
        assert cfg.clients.count == 10 and cfg.eval.local_val_share > 0
        assert cfg.task.kind == ("causal_lm" if model == "smollm2" else "classification")
        assert cfg.output.name == name
        header = Path(CONTEXT / f"{name}.yaml").read_text().splitlines()[0]
        assert header.startswith("# Context as a non-IID factor")
    for model in ("minilm", "smollm2"):
        budgets = {budget(cfg) for name, cfg in configs.items() if name.startswith(model)}
        assert len(budgets) == 1, f"{model} configs differ in budget: {budgets}"
