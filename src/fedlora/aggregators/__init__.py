"""How adapters of possibly different ranks combine. Add one: a new module here that registers a class."""

from fedlora.aggregators import fedex, fedit, fedsa, ffa, flexlora, flora, hlora, lorafair, rolora, zeropad
from fedlora.aggregators.base import AGGREGATORS, Aggregator, get_aggregator

__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "fedex",
    "fedit",
    "fedsa",
    "ffa",
    "flexlora",
    "flora",
    "get_aggregator",
    "hlora",
    "lorafair",
    "rolora",
    "zeropad",
]
