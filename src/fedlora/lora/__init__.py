"""Adapter tensors and their algebra: pure functions, no I/O beyond (de)serialisation, no config."""

from fedlora.lora.adapter import Adapter, LoRAFactors

__all__ = ["Adapter", "LoRAFactors"]
