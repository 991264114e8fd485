"""Partitioners: one module each, registered by name (config `partition.name`)."""

from fedlora.data.partitioners import by_column, iid, label, length, noise, quality, quantity
from fedlora.data.partitioners.base import PARTITIONERS, Partitioner, PartitionInputs, check_partition
from fedlora.data.partitioners.binned import BinnedSkew, Binning
from fedlora.data.partitioners.corruption import Corruption

__all__ = [
    "PARTITIONERS",
    "BinnedSkew",
    "Binning",
    "Corruption",
    "PartitionInputs",
    "Partitioner",
    "by_column",
    "check_partition",
    "iid",
    "label",
    "length",
    "noise",
    "quality",
    "quantity",
]
