"""Partitioners: one module each, registered by name (config `partition.name`)."""

from fedlora.data.partitioners import iid, label, quantity
from fedlora.data.partitioners.base import PARTITIONERS, Partitioner, PartitionInputs, check_partition

__all__ = ["PARTITIONERS", "PartitionInputs", "Partitioner", "check_partition", "iid", "label", "quantity"]
