"""The package itself: a lazy public API, and no warning printed on every run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

TRIGGER = (
    "import warnings; warnings.simplefilter('always')\n"
    "{prelude}"
    "from transformers import BertConfig, BertModel\n"
    "model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16))\n"
    "model.is_gradient_checkpointing  # what peft's PeftModel.__init__ reads\n"
)


def test_the_public_api_imports_on_first_use():
    from fedlora import Adapter, LoRAFactors, get_aggregator

    assert Adapter.__name__ == "Adapter" and LoRAFactors.__name__ == "LoRAFactors" and callable(get_aggregator)
    with pytest.raises(AttributeError):
        __import__("fedlora").NoSuchThing  # noqa: B018


@pytest.mark.slow
def test_the_gradient_checkpointing_future_warning_is_not_printed():
    def stderr(prelude: str) -> str:
        run = subprocess.run([sys.executable, "-c", TRIGGER.format(prelude=prelude)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stderr

    assert "is_gradient_checkpointing` is deprecated" in stderr("")  # the warning exists without fedlora
    assert "FutureWarning" not in stderr("import fedlora\n")


def test_importing_fedlora_shortens_openmp_spinning_unless_the_user_chose():
    """libgomp's default spin slowed a step 2.8x beside another busy process (benchmarks/threads_under_load.py)."""
    code = "import os, fedlora; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

    def seen(**extra: str) -> str:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **extra})
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    assert seen() == "1000 None"
    assert seen(OMP_WAIT_POLICY="ACTIVE") == "None ACTIVE"  # the user's policy is left alone, no spin count added
    assert seen(GOMP_SPINCOUNT="300000") == "300000 None"
