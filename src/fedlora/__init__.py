"""fedlora: federated LoRA fine-tuning with heterogeneous ranks, asynchronous schedules and context-aware splits.

Stable public API for users' scripts::

    from fedlora import Adapter, get_aggregator

The names are imported on first use (PEP 562), not here: importing `fedlora` (and so `fedlora --help`)
must not pay for torch, which `Adapter` and the aggregators need.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

# OpenMP threads that finish their share of an operation spin, waiting for the next one (libgomp: 300k spins).
# When another process holds a core (a second run, a test, a benchmark), torch's threads spin against it: a
# MiniLM step took 1.5 s instead of 0.54 s beside a busy process. A passive wait fixes that but makes each of
# a step's thousands of small parallel regions pay a futex wake-up on an idle machine (0.70 s). A short spin,
# GOMP_SPINCOUNT=1000, measured best beside a busy process (0.88 s) and costs less idle (0.64 s) than passive
# (benchmarks/threads_under_load.py, docs/results.md §0). It only applies if torch has not loaded its OpenMP
# runtime yet, i.e. before `import torch`; an OMP_WAIT_POLICY or GOMP_SPINCOUNT of your own wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"

__version__ = "0.1.0"
__all__ = ["Adapter", "LoRAFactors", "__version__", "get_aggregator"]

# peft (up to 0.21) reads transformers' deprecated `is_gradient_checkpointing` in PeftModel.__init__, which
# under transformers 5 prints a FutureWarning on every run (and every Flower worker). fedlora never uses
# gradient checkpointing and cannot change peft's call, so exactly that warning is ignored.
warnings.filterwarnings(
    "ignore",
    message=r"`is_gradient_checkpointing` is deprecated",
    category=FutureWarning,
    module=r"transformers\.modeling_utils",
)

_LAZY = {
    "Adapter": "fedlora.lora.adapter",
    "LoRAFactors": "fedlora.lora.adapter",
    "get_aggregator": "fedlora.aggregators",
}

if TYPE_CHECKING:
    from fedlora.aggregators import get_aggregator
    from fedlora.lora.adapter import Adapter, LoRAFactors


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fedlora' has no attribute {name!r}")
