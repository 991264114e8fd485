"""The noise partitioner corrupts exactly the stated share per client, deterministically by seed."""

import numpy as np
import pytest

from fedlora.data.glue import TextPairs
from fedlora.data.partitioners import PARTITIONERS, Corruption, PartitionInputs
from fedlora.data.partitioners.noise import shuffle_words
from fedlora.data.tokenized import TokenizedPairs
from fedlora.errors import ConfigError


def make(seed: int = 0, **options):
    cls = PARTITIONERS.get("noise")
    return cls(cls.Options.model_validate(options), seed)


N = 400
LABELS = np.arange(N) % 2
TEXT_A = [f"client data example number {i} with several distinct words" for i in range(N)]
TEXT_B = [f"second sentence {i} is here too" for i in range(N)]
INPUTS = PartitionInputs(labels=LABELS, lengths=np.full(N, 12), text_a=TEXT_A, text_b=TEXT_B)
SHARES = [0.0, 0.1, 0.25, 0.5, 1.0]


def test_given_shares_flip_exactly_that_many_labels_per_client():
    p = make(shares=SHARES, corrupt="labels")
    parts = p.split(INPUTS, 5)
    c = p.corrupt(INPUTS, parts)
    assert not c.texts
    for share, part in zip(SHARES, parts, strict=True):
        flipped = [i for i in part.tolist() if i in c.labels]
        assert len(flipped) == int(np.floor(share * len(part) + 0.5))
        assert all(c.labels[i] == 1 - LABELS[i] for i in flipped)
    assert [r["flipped"] for r in c.per_client(parts)] == [0, 8, 20, 40, 80]


def test_text_shuffles_keep_the_words_and_change_their_order():
    p = make(shares=SHARES, corrupt="text")
    parts = p.split(INPUTS, 5)
    c = p.corrupt(INPUTS, parts)
    assert not c.labels and [r["shuffled"] for r in c.per_client(parts)] == [0, 8, 20, 40, 80]
    for i, (a, b) in c.texts.items():
        assert sorted(a.split()) == sorted(TEXT_A[i].split()) and a != TEXT_A[i]
        assert sorted(b.split()) == sorted(TEXT_B[i].split()) and b != TEXT_B[i]


def test_both_corrupts_the_same_examples_and_is_deterministic_by_seed():
    a = make(seed=5, shares=SHARES, corrupt="both")
    b = make(seed=5, shares=SHARES, corrupt="both")
    other = make(seed=6, shares=SHARES, corrupt="both")
    ca, cb = a.corrupt(INPUTS, a.split(INPUTS, 5)), b.corrupt(INPUTS, b.split(INPUTS, 5))
    co = other.corrupt(INPUTS, other.split(INPUTS, 5))
    assert set(ca.labels) == set(ca.texts)
    assert ca.labels == cb.labels and ca.texts == cb.texts
    assert ca.labels != co.labels


def test_drawn_shares_average_the_rate_and_small_alpha_concentrates_them():
    even = make(rate=0.2, alpha=1e4).shares(8)
    np.testing.assert_allclose(even, 0.2, atol=0.02)
    few = make(rate=0.1, alpha=0.05).shares(8)
    assert few.max() > 0.5 and np.sort(few)[:-2].max() < 0.05
    assert np.all((few >= 0) & (few <= 1))


def test_more_than_two_classes_flip_to_another_class():
    labels = np.arange(300) % 3
    inputs = PartitionInputs(labels=labels, lengths=np.ones(300))
    p = make(shares=[1.0, 1.0, 1.0])
    c = p.corrupt(inputs, p.split(inputs, 3))
    assert len(c.labels) == 300 and all(new != labels[i] for i, new in c.labels.items())
    assert set(c.labels.values()) == {0, 1, 2}


def test_corruption_applies_to_pairs_and_retokenises_only_shuffled_examples():
    pairs = TextPairs(["a b c", "d e f", "g h"], ["x", "y", "z"], [0, 1, 0])
    corruption = Corruption(labels={0: 1}, texts={2: ("h g", "z")}, shares=(0.5,))
    out = corruption.apply(pairs)
    assert out.labels == [1, 1, 0] and out.text_a == ["a b c", "d e f", "h g"] and pairs.text_a[2] == "g h"
    tok = TokenizedPairs([[1, 2], [3, 4], [5, 6]], None, np.array([0, 1, 0]), pad_id=0)
    seen = []

    def tokenize(p):
        seen.append(p.text_a)
        return TokenizedPairs([[9, 9, 9]] * len(p), None, np.array(p.labels), pad_id=0)

    new = corruption.apply_tokenized(tok, out, tokenize)
    assert seen == [["h g"]]
    assert new.input_ids == [[1, 2], [3, 4], [9, 9, 9]] and new.labels.tolist() == [1, 1, 0]
    assert tok.labels.tolist() == [0, 1, 0]


def test_shuffle_words_never_returns_the_text_unchanged():
    rng = np.random.default_rng(0)
    assert all(shuffle_words("one two", rng) == "two one" for _ in range(20))
    assert shuffle_words("same same", rng) == "same same"


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="partition.shares has 2 entries but clients.count is 5"):
        p = make(shares=[0.1, 0.2])
        p.corrupt(INPUTS, p.split(INPUTS, 5))
    with pytest.raises(ValueError, match="name: 'noise' is not a partitioner"):
        make(base={"name": "noise"})
    with pytest.raises(ValueError, match="alpha: Input should be greater than 0"):
        make(base={"name": "label", "alpha": -1})
    with pytest.raises(ValueError, match="every share must lie in"):
        make(shares=[1.5])
