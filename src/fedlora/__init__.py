"""fedlora: federated LoRA fine-tuning with heterogeneous ranks, asynchronous schedules and context-aware splits.

Stable public API for users' scripts::

    from fedlora import Adapter, get_aggregator
"""

from fedlora.aggregators import get_aggregator
from fedlora.lora.adapter import Adapter, LoRAFactors

__version__ = "0.1.0"
__all__ = ["Adapter", "LoRAFactors", "__version__", "get_aggregator"]
