"""Staleness weights s(tau): how much a result computed from an old global version still counts.

tau = the server's version when the result arrives - the version the client started from. A result that
started long ago pulls the model towards where it was, so asynchronous schedules damp it. The three
families are those of FedAsync (Xie et al., 2019, "Asynchronous Federated Optimization", sec. 5.2);
FedBuff (Nguyen et al., 2022, "Federated Learning with Buffered Asynchronous Aggregation") uses the
polynomial one with a = 1/2, i.e. 1 / sqrt(1 + tau).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StalenessOptions(BaseModel):
    """Config `schedule.staleness`: which s(tau) and its parameters."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["constant", "polynomial", "hinge"] = Field(
        "constant", description="constant: s=1; polynomial: (1+tau)^-a; hinge: 1 up to b, then 1/(a(tau-b)+1)"
    )
    a: float = Field(0.5, ge=0, description="polynomial: the exponent; hinge: the slope after b")
    b: float = Field(4.0, ge=0, description="hinge: the staleness up to which a result counts fully")


def staleness_weight(tau: int, options: StalenessOptions) -> float:
    """s(tau) in (0, 1]; s(0) = 1 for every family, so fresh results are never damped."""
    if tau < 0:
        raise ValueError(f"staleness must be >= 0, got {tau}")
    if options.name == "constant":
        return 1.0
    if options.name == "polynomial":
        return float((1.0 + tau) ** -options.a)
    if tau <= options.b:
        return 1.0
    return 1.0 / (options.a * (tau - options.b) + 1.0)
