"""Context-quality scores: one number per text, pluggable by name (config `partition.scorer`).

Scores are what the `quality` partitioner bins into quantiles, so only their order matters there; reports
show their means. Each scorer states its formula and direction:

- `sentences`: sentence count (more = longer, richer context);
- `heuristic`: a text-quality score in [0, 1] (higher = cleaner);
- `perplexity`: perplexity under a reference causal LM (lower = more fluent / in-distribution).

A scorer is a factory `(lm: LMOptions, seed) -> (texts -> scores)`; add one with `@register_scorer(name)`
(tests register their own to inject scores).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fedlora.errors import ConfigError

TextScorer = Callable[[Sequence[str]], np.ndarray]
ScorerFactory = Callable[["LMOptions", int], TextScorer]


class LMOptions(BaseModel):
    """The reference causal LM of the `perplexity` scorer (config `partition.lm`)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, description="hub name or local directory of a causal LM (or the alias 'minilm')")
    tokenizer: str | None = Field(None, description="tokenizer name/path; null = the model's own")
    random_init: dict[str, Any] | None = Field(
        None,
        description="config overrides, weights random (tests); with a `model_type` key the config is built "
        "from scratch and `name` may be null",
    )
    gguf_file: str | None = Field(None, description="GGUF file inside `name` to load (needs the gguf package)")
    batch_size: int = Field(16, ge=1, description="texts per forward pass")
    max_length: int = Field(128, ge=2, description="tokens per text after truncation")

    def check(self) -> None:
        built = bool(self.random_init and "model_type" in self.random_init)
        if self.name is None and not built:
            raise ValueError(
                "the perplexity scorer needs a reference causal LM: set lm.name to a hub name or local directory, "
                "or lm.random_init with a model_type (e.g. {model_type: llama, hidden_size: 16})"
            )
        if self.name is None and self.tokenizer is None:
            raise ValueError("set lm.tokenizer (e.g. 'minilm') when lm.name is null")


SCORERS: dict[str, ScorerFactory] = {}


def register_scorer(name: str) -> Callable[[ScorerFactory], ScorerFactory]:
    def deco(factory: ScorerFactory) -> ScorerFactory:
        SCORERS[name] = factory
        return factory

    return deco


def get_scorer(name: str, lm: LMOptions | None = None, seed: int = 0) -> TextScorer:
    if name not in SCORERS:
        raise ConfigError(
            f"partition.scorer: unknown quality scorer {name!r}; choose one of: {', '.join(sorted(SCORERS))}"
        )
    return SCORERS[name](lm or LMOptions(), seed)


# --- sentences ---------------------------------------------------------------------------------------------

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD_CHAR = re.compile(r"\w")


def sentence_count(text: str) -> int:
    """Number of sentences: pieces between a run of .!? followed by whitespace, or a newline, that hold a
    letter or digit. Simple on purpose: "Hello there. How are you?" is 2; abbreviations ("U.S. law") split."""
    return sum(1 for piece in _SENTENCE_BREAK.split(text) if _WORD_CHAR.search(piece))


@register_scorer("sentences")
def _sentences(lm: LMOptions, seed: int) -> TextScorer:
    return lambda texts: np.array([sentence_count(t) for t in texts], dtype=float)


# --- heuristic -------------------------------------------------------------------------------------------


def _is_lone_punctuation(token: str) -> bool:
    return len(token) == 1 and not token.isalnum()


def heuristic_quality(text: str) -> float:
    """A text-quality score in [0, 1], higher = cleaner: the mean of three shares over the whitespace tokens
    (lone punctuation marks such as "," are formatting and are skipped; tokens compared lower-cased):

    - alphabetic share: tokens whose characters are at least half letters ("word", "don't"; not "$$", "1234");
    - 1 - repetition: repetition = 1 - distinct bigrams / bigrams (0 for fewer than two tokens);
    - type-token ratio: distinct tokens / tokens.

    An empty text scores 0. Clean prose scores ~0.9; repeated or symbol-heavy text much lower.
    """
    tokens = [t.lower() for t in text.split() if not _is_lone_punctuation(t)]
    n = len(tokens)
    if n == 0:
        return 0.0
    alphabetic = sum(1 for t in tokens if 2 * sum(ch.isalpha() for ch in t) >= len(t)) / n
    bigrams = list(itertools.pairwise(tokens))
    repetition = 1.0 - len(set(bigrams)) / len(bigrams) if bigrams else 0.0
    type_token = len(set(tokens)) / n
    return (alphabetic + (1.0 - repetition) + type_token) / 3.0


@register_scorer("heuristic")
def _heuristic(lm: LMOptions, seed: int) -> TextScorer:
    return lambda texts: np.array([heuristic_quality(t) for t in texts], dtype=float)


# --- perplexity ----------------------------------------------------------------------------------------


def perplexities(model, tokenizer, texts: Sequence[str], batch_size: int = 16, max_length: int = 128) -> np.ndarray:
    """exp(mean next-token negative log-likelihood) of every text under a causal LM; no gradients, batched,
    padding masked out (so the batch size does not change a score). A text of fewer than two tokens has
    nothing to predict and gets the perplexity of a uniform guess, the vocabulary size."""
    import torch

    out = np.empty(len(texts), dtype=float)
    vocab = float(model.config.vocab_size)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.float()
            target = enc["input_ids"][:, 1:]
            mask = enc["attention_mask"][:, 1:].float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), target, reduction="none")
            tokens = mask.sum(dim=1)
            mean = (nll * mask).sum(dim=1) / tokens.clamp(min=1)
            scores = torch.where(tokens > 0, mean.exp(), torch.full_like(mean, vocab))
            out[start : start + len(chunk)] = scores.double().numpy()
    return out


def load_reference_lm(lm: LMOptions, seed: int):
    """(model, tokenizer) for the perplexity scorer: from `lm.name`, or random weights from `lm.random_init`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from fedlora.models.loading import load_tokenizer, resolve_model_path
    from fedlora.seeding import seed_torch

    try:
        lm.check()
    except ValueError as exc:
        raise ConfigError(f"partition.lm: {exc}") from None
    tokenizer = load_tokenizer(lm.tokenizer or lm.name, None if lm.tokenizer else lm.gguf_file)
    if tokenizer.padding_side != "right":
        tokenizer.padding_side = "right"
    overrides = dict(lm.random_init or {})
    kwargs: dict[str, Any] = {"gguf_file": lm.gguf_file} if lm.gguf_file else {}
    try:
        if "model_type" in overrides:
            overrides.setdefault("vocab_size", len(tokenizer))
            config = AutoConfig.for_model(overrides.pop("model_type"), **overrides)
        elif overrides:
            config = AutoConfig.from_pretrained(resolve_model_path(lm.name), **kwargs)
            for key, value in overrides.items():
                if not hasattr(config, key):
                    raise ConfigError(f"partition.lm.random_init.{key}: {config.model_type} configs have no such field")
                setattr(config, key, value)
        else:
            return AutoModelForCausalLM.from_pretrained(resolve_model_path(lm.name), **kwargs), tokenizer
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"partition.lm: cannot build the reference LM {lm.name or lm.random_init!r} ({exc}); give a local "
            "causal-LM directory, a hub name on a machine with hub access, or random_init with a model_type"
        ) from exc
    seed_torch(seed, "quality-lm-init")
    return AutoModelForCausalLM.from_config(config), tokenizer


@register_scorer("perplexity")
def _perplexity(lm: LMOptions, seed: int) -> TextScorer:
    def score(texts: Sequence[str]) -> np.ndarray:
        model, tokenizer = load_reference_lm(lm, seed)
        return perplexities(model, tokenizer, texts, lm.batch_size, lm.max_length)

    return score
