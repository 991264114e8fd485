"""How adapters of possibly different ranks combine. Add one: a new module here that registers a class."""

from fedlora.aggregators import fedit, ffa, flexlora, flora, hlora, zeropad
from fedlora.aggregators.base import AGGREGATORS, Aggregator, get_aggregator

__all__ = ["AGGREGATORS", "Aggregator", "fedit", "ffa", "flexlora", "flora", "get_aggregator", "hlora", "zeropad"]
