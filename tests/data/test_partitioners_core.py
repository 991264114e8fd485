import numpy as np
import pytest

from fedlora.data.partitioners import PARTITIONERS, PartitionInputs
from fedlora.errors import ConfigError


def make(name: str, seed: int = 0, **options):
    cls = PARTITIONERS.get(name)
    return cls(cls.Options.model_validate(options), seed)


LABELS = np.array([0] * 300 + [1] * 700)
INPUTS = PartitionInputs(labels=LABELS)


@pytest.mark.parametrize("name,options", [("iid", {}), ("label", {"alpha": 0.5}), ("quantity", {"alpha": 0.5})])
def test_every_example_lands_in_exactly_one_client(name, options):
    parts = make(name, **options).split(INPUTS, 10)
    assert len(parts) == 10
    allidx = np.concatenate(parts)
    assert sorted(allidx.tolist()) == list(range(len(LABELS)))
    assert min(len(p) for p in parts) >= 2


@pytest.mark.parametrize("name,options", [("iid", {}), ("label", {"alpha": 0.5}), ("quantity", {"alpha": 0.5})])
def test_same_seed_same_split_other_seed_other_split(name, options):
    a = make(name, seed=1, **options).split(INPUTS, 5)
    b = make(name, seed=1, **options).split(INPUTS, 5)
    c = make(name, seed=2, **options).split(INPUTS, 5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_iid_sizes_are_near_equal_and_label_mix_near_global():
    parts = make("iid").split(INPUTS, 10)
    assert {len(p) for p in parts} == {100}
    shares = [LABELS[p].mean() for p in parts]
    assert max(abs(s - 0.7) for s in shares) < 0.15


def test_label_dirichlet_small_alpha_skews_labels_large_alpha_does_not():
    skewed = make("label", alpha=0.2).split(INPUTS, 5)
    flat = make("label", alpha=1000.0).split(INPUTS, 5)
    spread = lambda parts: np.std([LABELS[p].mean() for p in parts])  # noqa: E731
    assert spread(skewed) > 0.2
    assert spread(flat) < 0.05


def test_quantity_skew_makes_unequal_sizes_and_keeps_labels_mixed():
    parts = make("quantity", alpha=0.3).split(INPUTS, 10)
    sizes = sorted(len(p) for p in parts)
    assert sizes[-1] > 4 * sizes[0]
    assert sum(sizes) == len(LABELS)
    big = max(parts, key=len)
    assert abs(LABELS[big].mean() - 0.7) < 0.1


def test_too_many_clients_is_a_config_error_naming_the_fields():
    with pytest.raises(ConfigError, match="clients.count=600 x partition.min_size=2"):
        make("iid").split(INPUTS, 600)
