"""Context-quality skew: clients draw their mix of quality-score quantile bins from Dirichlet(alpha).

One data owner holds clean text, another noisy text. The score comes from a pluggable scorer in
`fedlora.data.quality` (`sentences`, `heuristic`, `perplexity`, or one registered by the user), computed on
text_a, text_b, or the pair joined by a newline (`text`). Bins, mixes and assignment are those of `binned`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from fedlora.data.partitioners.base import PARTITIONERS, PartitionInputs
from fedlora.data.partitioners.binned import BinnedOptions, BinnedSkew
from fedlora.data.quality import SCORERS, LMOptions, get_scorer
from fedlora.errors import ConfigError


class QualityOptions(BinnedOptions):
    scorer: str = Field("heuristic", description="quality scorer: sentences, heuristic, perplexity (or registered)")
    text: Literal["pair", "a", "b"] = Field("pair", description="score text_a, text_b, or both joined by a newline")
    lm: LMOptions = Field(
        default_factory=LMOptions, validate_default=True, description="the perplexity scorer's reference causal LM"
    )

    @field_validator("scorer")
    @classmethod
    def _check_scorer(cls, scorer: str) -> str:
        if scorer not in SCORERS:
            raise ValueError(f"unknown quality scorer {scorer!r}; choose one of: {', '.join(sorted(SCORERS))}")
        return scorer

    @field_validator("lm")
    @classmethod
    def _check_lm(cls, lm: LMOptions, info: ValidationInfo) -> LMOptions:
        if info.data.get("scorer") == "perplexity":
            lm.check()
        return lm


def texts_of(inputs: PartitionInputs, which: Literal["pair", "a", "b"]) -> list[str]:
    if inputs.text_a is None:
        raise ConfigError("partition.name=quality needs the example texts (PartitionInputs.text_a/text_b)")
    if which == "b" and inputs.text_b is None:
        raise ConfigError("partition.text=b: the task has one text column, so there is no text_b; use text: a")
    if which == "a" or inputs.text_b is None:  # a single-text task: the pair is its one text
        return list(inputs.text_a)
    if which == "b":
        return list(inputs.text_b)
    return [f"{a}\n{b}" for a, b in zip(inputs.text_a, inputs.text_b, strict=True)]


@PARTITIONERS.register("quality")
class QualitySkew(BinnedSkew):
    Options = QualityOptions
    options: QualityOptions
    kind = "quality"

    def score(self, inputs: PartitionInputs) -> tuple[str, np.ndarray]:
        scorer = get_scorer(self.options.scorer, self.options.lm, self.seed)
        return f"quality ({self.options.scorer})", scorer(texts_of(inputs, self.options.text))
