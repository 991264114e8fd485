"""The docs cannot drift: the config reference is the generator's output and lists every field; every
registered method is documented; the extension examples shown in docs/extending.md are real, importable
files that plug into a run."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

from fedlora.aggregators import AGGREGATORS, get_aggregator
from fedlora.clients.ranks import RANK_POLICIES
from fedlora.config import ExperimentConfig, NamedChoice
from fedlora.data.partitioners import PARTITIONERS
from fedlora.docs_reference import REGENERATE, generate
from fedlora.lora.adapter import Adapter
from fedlora.schedules import SCHEDULES

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
REGISTRIES = [AGGREGATORS, SCHEDULES, PARTITIONERS, RANK_POLICIES]


def test_committed_reference_equals_the_generated_one():
    committed = (DOCS / "config-reference.md").read_text()
    assert committed == generate(), (
        f"docs/config-reference.md is out of date with the config models; regenerate it with: {REGENERATE}"
    )


def _section_model(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def expected_fields(model: type[BaseModel], prefix: str) -> list[tuple[str | None, str]]:
    """(heading of the implementation it belongs under or None, dotted key) for every field, recursively."""
    out: list[tuple[str | None, str]] = []
    for name, f in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        out.append((None, key))
        sub = _section_model(f.annotation)
        if sub is not None:
            out += expected_fields(sub, key)
    if issubclass(model, NamedChoice):
        registry = model.__private_attributes__["_registry"].default
        for impl in registry.names():
            for _, key in expected_fields(registry.get(impl).Options, prefix):
                out.append((f"`{prefix}.name: {impl}`", key))
    return out


def implementation_sections(text: str) -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading of the same or a higher level."""
    sections = {}
    heads = list(re.finditer(r"^(#+) (.+)$", text, flags=re.M))
    for i, m in enumerate(heads):
        level = len(m.group(1))
        end = next((h.start() for h in heads[i + 1 :] if len(h.group(1)) <= level), len(text))
        sections[m.group(2)] = text[m.end() : end]
    return sections


def test_every_field_of_every_model_and_option_is_listed():
    text = generate()
    sections = implementation_sections(text)
    fields = expected_fields(ExperimentConfig, "")
    assert len(fields) > 80
    missing = []
    for heading, key in fields:
        where = text if heading is None else sections.get(heading, "")
        if f"| `{key}` |" not in where and f"# `{key}`\n" not in where:  # a value row, or a section heading
            missing.append(f"{key} (under {heading})" if heading else key)
    assert not missing, f"not in the config reference: {missing}"
    for registry in REGISTRIES:  # every registered implementation has its own section
        for name in registry.names():
            assert f"`{registry.field}: {name}`" in sections, f"{registry.field}: {name} has no section"


def test_reference_is_deterministic():
    assert generate() == generate()


def test_cli_prints_the_reference(tmp_path):
    from typer.testing import CliRunner

    from fedlora.cli import app

    result = CliRunner().invoke(app, ["config-reference"])
    assert result.exit_code == 0 and result.output == generate()
    result = CliRunner().invoke(app, ["config-reference", "--out", str(tmp_path / "ref.md")])
    assert result.exit_code == 0 and (tmp_path / "ref.md").read_text() == generate()


def test_every_registered_method_is_documented_with_a_citation_where_due():
    methods = (DOCS / "methods.md").read_text()
    for registry in (AGGREGATORS, SCHEDULES, PARTITIONERS):
        for name in registry.names():
            assert re.search(rf"^### `{re.escape(name)}`", methods, flags=re.M), (
                f"docs/methods.md has no section for {registry.field}: {name}; add one with its formula and citation"
            )
    for name in RANK_POLICIES.names():
        assert f"`{name}`" in methods
    sections = implementation_sections(methods)
    cited = {"fedit", "zeropad", "hlora", "flexlora", "flora", "ffa", "fedavg", "fedbuff", "fedasync", "fedfa", "label"}
    for heading, body in sections.items():
        name = heading.split("`")[1] if heading.startswith("`") else None
        if name in cited:
            assert re.search(r"(19|20)\d\d, \"", body), f'{name}: no citation (Authors, year, "Title")'


def test_every_doc_page_links_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


# ----- the extension examples --------------------------------------------------------------------------------


def _load(name: str):
    """Import a docs example as a user's script would (`import dense_svd`), under a name of its own."""
    module_name = f"fedlora_docs_example_{name}"
    spec = importlib.util.spec_from_file_location(module_name, DOCS / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pydantic resolves the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def examples():
    """Import (and so register) the docs examples; unregister afterwards so other tests see the real set."""
    try:
        yield _load("dense_svd"), _load("async_delta")
    finally:
        AGGREGATORS._items.pop("dense_svd", None)
        SCHEDULES._items.pop("async_delta", None)
        for name in ("dense_svd", "async_delta"):
            sys.modules.pop(f"fedlora_docs_example_{name}", None)


def test_extending_md_shows_exactly_the_tested_example_files():
    text = (DOCS / "extending.md").read_text()
    blocks = re.findall(r"<!-- example: (\S+) -->\n```python\n(.*?)```", text, flags=re.S)
    assert sorted(p for p, _ in blocks) == ["docs/examples/async_delta.py", "docs/examples/dense_svd.py"]
    for path, code in blocks:
        assert code == (REPO / path).read_text(), f"docs/extending.md shows an outdated copy of {path}"


def test_example_aggregator_agrees_with_hlora(examples):
    gen = torch.Generator().manual_seed(0)

    def adapter() -> Adapter:
        layers = {"l0": (torch.randn(4, 12, generator=gen), torch.randn(10, 4, generator=gen))}
        return Adapter.from_factors(layers, alpha=8.0, extras={"head": torch.randn(3, generator=gen)})

    terms = [(0.5, adapter()), (0.3, adapter()), (0.2, adapter())]
    dense = get_aggregator("dense_svd", rank=4).combine(terms)
    exact = get_aggregator("hlora", rank=4, method="exact").combine(terms)
    assert torch.allclose(dense.delta("l0", torch.float64), exact.delta("l0", torch.float64), atol=1e-4)
    assert torch.allclose(dense.extras["head"], sum(w * a.extras["head"] for w, a in terms), atol=1e-6)


@pytest.mark.slow
def test_example_schedule_and_aggregator_train_the_tiny_model(examples, tiny_config, tmp_path):
    from fedlora.experiment import run_experiment

    assert "`schedule.name: async_delta`" in generate() and "| `schedule.server_lr` |" in generate()
    cfg = tiny_config(
        "schedule={name: async_delta, server_lr: 0.5}",
        "aggregator.name=dense_svd",
        "stop.versions=3",
        "training.threads=1",
    )
    summary = run_experiment(cfg, out=tmp_path / "run")
    assert summary["totals"]["versions"] == 3
    assert summary["totals"]["jobs_arrived"] == 3  # asynchronous: one arrival per version
    assert summary["final"]["metrics"]["accuracy"] > 0
