"""Quality scorers on hand-written texts, and the perplexity scorer under a tiny random Llama."""

import numpy as np
import pytest

from fedlora.data.partitioners import PARTITIONERS, PartitionInputs
from fedlora.data.quality import (
    LMOptions,
    get_scorer,
    heuristic_quality,
    load_reference_lm,
    perplexities,
    sentence_count,
)

CLEAN = "The committee approved the new budget after a long debate on Tuesday, officials said."
REPETITIVE = "buy now buy now buy now buy now buy now buy now buy now buy now"
SYMBOLS = "#### $$$ 1234 @@ 99 %% ++ ~~~ 42 ^^"
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}


@pytest.mark.parametrize(
    "text,count",
    [
        ("", 0),
        ("no terminal punctuation here", 1),
        ("One sentence.", 1),
        ("Hello there. How are you? Fine!", 3),
        ("Wait... what?! Really.", 3),
        ("First line\nsecond line.", 2),
        ('Amrozi accused his brother , whom he called " the witness " , of distorting his evidence .', 1),
        ("Prices rose 2.5 percent. Then they fell .", 2),
        ("   ...   ", 0),
    ],
)
def test_sentence_counts_are_exact(text, count):
    assert sentence_count(text) == count


def test_heuristic_orders_clean_above_repetitive_and_symbol_noise():
    clean, rep, sym = (heuristic_quality(t) for t in (CLEAN, REPETITIVE, SYMBOLS))
    assert clean > 0.85
    assert clean > rep + 0.3 and clean > sym + 0.3
    assert heuristic_quality("") == 0.0
    assert min(rep, sym) >= 0.0 and max(clean, rep, sym) <= 1.0


def test_heuristic_formula_on_a_hand_computed_text():
    # tokens (lone "," skipped): a a b $$ -> alphabetic 3/4; bigrams (a,a),(a,b),(b,$$) all distinct -> 1;
    # types {a, b, $$} / 4 = 3/4; mean = (0.75 + 1 + 0.75) / 3
    assert heuristic_quality("a , a b $$") == pytest.approx((0.75 + 1.0 + 0.75) / 3)


def test_registered_scorers_score_batches():
    texts = [CLEAN, REPETITIVE, SYMBOLS]
    assert get_scorer("sentences")(texts).tolist() == [1.0, 1.0, 1.0]
    assert get_scorer("heuristic")(texts).argmax() == 0


@pytest.fixture(scope="module")
def tiny_lm():
    return load_reference_lm(LMOptions(tokenizer="minilm", random_init=TINY_LLAMA), seed=0)


def test_perplexity_is_batched_without_padding_effects_and_matches_the_model_loss(tiny_lm):
    import torch

    model, tokenizer = tiny_lm
    texts = [CLEAN, REPETITIVE, SYMBOLS, "Short.", ""]
    one = perplexities(model, tokenizer, texts, batch_size=1)
    many = perplexities(model, tokenizer, texts, batch_size=4)
    np.testing.assert_allclose(one, many, rtol=1e-4)
    assert np.all(np.isfinite(one)) and np.all(one > 1)
    enc = tokenizer(CLEAN, return_tensors="pt")
    with torch.no_grad():
        loss = model(**enc, labels=enc["input_ids"]).loss
    assert one[0] == pytest.approx(float(loss.exp()), rel=1e-4)


def test_perplexity_reference_lm_is_seeded(tiny_lm):
    again, tokenizer = load_reference_lm(LMOptions(tokenizer="minilm", random_init=TINY_LLAMA), seed=0)
    model, _ = tiny_lm
    a = perplexities(model, tokenizer, [CLEAN, SYMBOLS])
    b = perplexities(again, tokenizer, [CLEAN, SYMBOLS])
    np.testing.assert_array_equal(a, b)


def test_quality_partitioner_with_perplexity_from_config_options():
    texts = [CLEAN, REPETITIVE, SYMBOLS, "Short.", "Another ordinary sentence about the weather today."] * 4
    inputs = PartitionInputs(labels=np.arange(20) % 2, text_a=texts, text_b=["ok"] * 20)
    cls = PARTITIONERS.get("quality")
    options = cls.Options.model_validate(
        {"scorer": "perplexity", "alpha": 1e-6, "bins": 2, "lm": {"tokenizer": "minilm", "random_init": TINY_LLAMA}}
    )
    p = cls(options, seed=1)
    parts = p.split(inputs, 2)
    b = p.binning(inputs)
    assert b.score == "quality (perplexity)" and np.all(b.values > 1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(20))
    assert [len(set(b.bin_of[q].tolist())) for q in parts] == [1, 1]
