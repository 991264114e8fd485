"""Scoring instruction responses on a tiny random Llama: exact match is greedy decoding, the loss is the
training loss, choices are scored by likelihood, and the metrics skip references too long to match."""

import numpy as np
import pytest
import torch

from fedlora.data.instruction_tokens import TokenizedInstructions
from fedlora.models.loading import load_causal_lm
from fedlora.seeding import seed_torch
from fedlora.training import response_scores
from fedlora.training.evaluate import ExampleScores, metrics_of
from fedlora.training.response_scores import score_responses

from ..conftest import TINY_LLAMA

VOCAB = 64


@pytest.fixture(scope="module")
def model():
    seed_torch(0, "model-init")
    return load_causal_lm("tiny-llama", random_init=TINY_LLAMA, pad_token_id=0, vocab_size=VOCAB).eval()


def prompts(n: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [[1, *(int(t) for t in rng.integers(2, VOCAB, size=3 + i % 4))] for i in range(n)]


def data(input_ids, candidates, labels=None, exact_match_tokens=16, complete=None) -> TokenizedInstructions:
    n = len(input_ids)
    return TokenizedInstructions(
        input_ids=input_ids,
        token_type_ids=None,
        labels=np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels),
        candidates=candidates,
        complete=complete or [True] * n,
        pad_id=0,
        vocab_size=VOCAB,
        has_choices=any(len(c) > 1 for c in candidates),
        exact_match_tokens=exact_match_tokens,
    )


def test_exact_match_is_greedy_decoding_reproducing_the_reference(model):
    ids = prompts(6)
    greedy = []
    with torch.no_grad():
        for p in ids:
            out = model.generate(torch.tensor([p]), max_new_tokens=3, do_sample=False, pad_token_id=0)
            greedy.append(tuple(out[0, len(p) :].tolist()))
    # half the references are what greedy decoding writes, half differ in their last token
    refs = [g if i % 2 == 0 else (*g[:-1], (g[-1] + 1) % VOCAB or 2) for i, g in enumerate(greedy)]
    scores = score_responses(model, data(ids, [(r,) for r in refs]), np.arange(6), batch_size=4)
    assert scores.exact_match.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    # references longer than exact_match_tokens, or cut by truncation, are not counted
    short = score_responses(model, data(ids, [(r,) for r in refs], exact_match_tokens=2), np.arange(6), 4)
    assert np.isnan(short.exact_match).all()
    cut = score_responses(model, data(ids, [(r,) for r in refs], complete=[False] * 6), np.arange(6), 4)
    assert np.isnan(cut.exact_match).all()


def test_the_loss_is_the_training_loss_and_both_logit_routes_agree(model, monkeypatch):
    ids = prompts(5)
    d = data(ids, [((5, 6, 7),), ((8,),), ((9, 10),), ((11, 12, 13, 14),), ((15,),)])
    s = score_responses(model, d, np.arange(5), batch_size=2)
    with torch.no_grad():
        for i in range(5):
            loss = model(**d.batch([i])).loss
            assert s.gold_nll[i] / s.gold_tokens[i] == pytest.approx(float(loss), rel=1e-5)
    monkeypatch.setattr(response_scores, "accepts_logits_to_keep", lambda m: False)
    full = score_responses(model, d, np.arange(5), batch_size=3)
    np.testing.assert_allclose(full.gold_nll, s.gold_nll, rtol=1e-5)
    assert np.array_equal(full.exact_match, s.exact_match, equal_nan=True)


def test_choices_are_scored_by_their_total_log_likelihood(model):
    ids = prompts(4)
    choices = [((5,), (6, 7)), ((8,), (9,), (10, 11)), ((12,), (13,)), ((14, 15), (16,))]
    d = data(ids, choices, labels=[1, 2, 0, 1])
    s = score_responses(model, d, np.arange(4), batch_size=3)
    with torch.no_grad():
        for i, cands in enumerate(choices):
            ll = []
            for c in range(len(cands)):
                enc = d.encode([i], candidate=c)
                ll.append(-float(model(**enc).loss) * len(cands[c]))
            assert s.predictions[i] == int(np.argmax(ll))


def test_metrics_average_exact_match_over_the_counted_examples_only():
    scores = ExampleScores(
        indices=np.arange(4),
        labels=np.zeros(4, dtype=np.int64),
        preds=np.zeros(4, dtype=np.int64),
        loss_sum=np.array([1.0, 2.0, 3.0, 4.0]),
        loss_count=np.array([1, 1, 1, 1]),
        causal=True,
        extra={"exact_match": np.array([1.0, np.nan, 0.0, np.nan])},
    )
    m = metrics_of(scores, ())
    assert "accuracy" not in m  # no choices: nothing to be accurate about
    assert m["exact_match"] == 0.5 and m["loss"] == 2.5 and m["perplexity"] == pytest.approx(np.exp(2.5))
    assert "exact_match" not in metrics_of(scores, (), subset=np.array([1, 3]))
