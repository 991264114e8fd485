"""Length and quality skew: quantile bins, Dirichlet bin mixes, composition with labels, determinism."""

import numpy as np
import pytest

from fedlora.data.partitioners import PARTITIONERS, PartitionInputs
from fedlora.data.partitioners.binned import fit_counts, quantile_bins
from fedlora.data.quality import SCORERS
from fedlora.errors import ConfigError


def make(name: str, seed: int = 0, **options):
    cls = PARTITIONERS.get(name)
    return cls(cls.Options.model_validate(options), seed)


RNG = np.random.default_rng(7)
N = 1200
LABELS = (RNG.random(N) < 0.65).astype(np.int64)
LENGTHS = RNG.integers(8, 120, N)  # integer lengths: many ties
WORDS = ["alpha", "beta", "gamma", "delta", "the", "a", "of", "and", "noise", "text"]
TEXT_A = [" ".join(RNG.choice(WORDS, size=int(k) % 20 + 1)) for k in LENGTHS]
TEXT_B = [f"Sentence {i}." for i in range(N)]
INPUTS = PartitionInputs(labels=LABELS, lengths=LENGTHS, text_a=TEXT_A, text_b=TEXT_B)


def bin_mix(p, parts, inputs=INPUTS):
    b = p.binning(inputs)
    return np.array([np.bincount(b.bin_of[q], minlength=b.bins) / len(q) for q in parts])


def test_bin_edges_are_quantiles_and_bins_hold_what_lies_between_them():
    values = np.concatenate([RNG.normal(size=500), np.full(200, 0.25)])  # a block of ties inside a bin
    for bins in (2, 4, 5, 7):
        bin_of, edges = quantile_bins(values, bins, np.random.default_rng(0))
        np.testing.assert_allclose(edges, np.quantile(values, np.linspace(0, 1, bins + 1)))
        sizes = np.bincount(bin_of, minlength=bins)
        assert sizes.max() - sizes.min() <= 2 and sizes.sum() == len(values)
        for b in range(bins):
            inside = values[bin_of == b]
            assert inside.min() >= edges[b] - 1e-12 and inside.max() <= edges[b + 1] + 1e-12


def test_length_bins_are_token_length_quantiles():
    b = make("length", bins=5).binning(INPUTS)
    assert b.kind == "length" and b.edges["all"] == pytest.approx(np.quantile(LENGTHS, np.linspace(0, 1, 6)))
    for k in range(5):
        assert LENGTHS[b.bin_of == k].min() >= b.edges["all"][k]
        assert LENGTHS[b.bin_of == k].max() <= b.edges["all"][k + 1]


@pytest.mark.parametrize("name", ["length", "quality"])
def test_tiny_alpha_gives_single_bin_clients_and_every_bin_is_used(name):
    for seed in range(3):
        p = make(name, seed=seed, alpha=1e-6, bins=4)
        parts = p.split(INPUTS, 8)
        mix = bin_mix(p, parts)
        assert np.all(mix.max(axis=1) == 1.0), mix  # each client holds one bin only
        assert set(mix.argmax(axis=1)) == {0, 1, 2, 3}  # and no bin is left out


@pytest.mark.parametrize("name", ["length", "quality"])
def test_large_alpha_gives_near_uniform_mixes_and_equal_sizes(name):
    p = make(name, alpha=1e4, bins=4)
    parts = p.split(INPUTS, 6)
    assert np.abs(bin_mix(p, parts) - 0.25).max() < 0.03
    assert max(len(q) for q in parts) - min(len(q) for q in parts) <= 4


def test_moderate_alpha_skews_bins_but_keeps_sizes_near_equal():
    p = make("length", alpha=0.3, bins=4)
    parts = p.split(INPUTS, 6)
    assert bin_mix(p, parts).max(axis=1).mean() > 0.45  # uniform mixes would give 0.25
    assert max(len(q) for q in parts) - min(len(q) for q in parts) <= 4


CASES = [
    ("length", {"alpha": 0.5}),
    ("length", {"alpha": 0.05, "bins": 5}),
    ("length", {"alpha": 0.5, "within_label": True}),
    ("length", {"alpha": 0.5, "label_alpha": 0.3}),
    ("quality", {"alpha": 0.5, "scorer": "heuristic"}),
    ("quality", {"alpha": 0.5, "scorer": "sentences", "text": "a", "within_label": True}),
    ("noise", {"base": {"name": "length", "alpha": 0.2}, "corrupt": "both"}),
    ("noise", {"base": {"name": "label", "alpha": 0.5}, "rate": 0.3}),
]


@pytest.mark.parametrize("name,options", CASES)
def test_every_example_lands_in_exactly_one_client(name, options):
    parts = make(name, **options).split(INPUTS, 7)
    assert len(parts) == 7
    assert sorted(np.concatenate(parts).tolist()) == list(range(N))
    assert min(len(q) for q in parts) >= 2


@pytest.mark.parametrize("name,options", CASES)
def test_same_seed_same_split_other_seed_other_split(name, options):
    a, b, c = (make(name, seed=s, **options) for s in (3, 3, 4))
    pa, pb, pc = a.split(INPUTS, 5), b.split(INPUTS, 5), c.split(INPUTS, 5)
    assert all(np.array_equal(x, y) for x, y in zip(pa, pb, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(pa, pc, strict=True))
    ca, cb = a.corrupt(INPUTS, pa), b.corrupt(INPUTS, pb)
    assert (ca is None and cb is None) or (ca.labels == cb.labels and ca.texts == cb.texts)


def test_within_label_cuts_bins_per_label_and_skews_inside_each_label():
    p = make("length", alpha=1e-6, within_label=True, bins=3)
    b = p.binning(INPUTS)
    for y in (0, 1):
        members = y == LABELS
        assert b.edges[f"label {y}"] == pytest.approx(np.quantile(LENGTHS[members], np.linspace(0, 1, 4)))
    parts = p.split(INPUTS, 6)
    for q in parts:  # one bin per client, and both labels present in about the data's proportion
        assert len(set(b.bin_of[q].tolist())) == 1
        assert abs(LABELS[q].mean() - LABELS.mean()) < 0.1


def test_label_alpha_composes_label_skew_with_bin_skew():
    flat = make("length", alpha=1e4, label_alpha=1e4).split(INPUTS, 6)
    skewed = make("length", alpha=1e4, label_alpha=0.1).split(INPUTS, 6)
    spread = lambda parts: np.std([LABELS[q].mean() for q in parts])  # noqa: E731
    assert spread(flat) < 0.05 and spread(skewed) > 0.2
    p = make("length", alpha=1e4, label_alpha=0.1)
    assert np.abs(bin_mix(p, p.split(INPUTS, 6)) - 0.25).max() < 0.1  # bins stay near-uniform


def test_fit_counts_keeps_cell_totals_and_zero_targets():
    target = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.2, 0.3, 0.5]])
    supply = np.array([100, 37, 64])
    counts = fit_counts(target, supply)
    assert counts.sum(axis=0).tolist() == supply.tolist()
    assert np.all(counts[target == 0] == 0)


def test_quality_partitioner_uses_an_injected_scorer(monkeypatch):
    monkeypatch.setitem(SCORERS, "chars", lambda lm, seed: lambda texts: np.array([len(t) for t in texts], float))
    p = make("quality", scorer="chars", text="a", alpha=1e-6, bins=2)
    parts = p.split(INPUTS, 4)
    chars = np.array([len(t) for t in TEXT_A])
    assert p.binning(INPUTS).score == "quality (chars)"
    means = sorted(chars[q].mean() for q in parts)
    assert means[0] < np.median(chars) < means[-1]


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"clients.count=700 x partition.min_size=2"):
        make("length").split(INPUTS, 700)
    with pytest.raises(ValueError, match="unknown quality scorer .nope."):
        make("quality", scorer="nope")
    with pytest.raises(ValueError, match="the perplexity scorer needs a reference causal LM"):
        make("quality", scorer="perplexity")
    with pytest.raises(ConfigError, match="partition.name=length needs the token length"):
        make("length").split(PartitionInputs(labels=LABELS), 4)
    # 4 single-bin clients over 3 bins: two share a bin, so no client set can all reach min_size=300
    messages = []
    for seed in range(20):
        try:
            make("length", seed=seed, alpha=1e-6, bins=3, min_size=300, max_tries=1).split(INPUTS, 4)
        except ConfigError as exc:
            messages.append(str(exc))
    assert messages and all(m.startswith("partition.alpha=1e-06: no draw in 1 tries") for m in messages)
