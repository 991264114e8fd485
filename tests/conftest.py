"""Shared fixtures: the GLUE data beside the repository, and tiny configs that run in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
GLUE = Path(os.environ.get("FEDLORA_TEST_GLUE", REPO.parent / "shared" / "data" / "glue"))

#: a Llama-style decoder small enough to train in a test (random weights, no download)
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
}

#: tiny-config overrides for an asynchronous run with heterogeneous ranks: FedBuff (K=2) + HLoRA, three
#: clients of different speeds and speed-tier ranks
ASYNC_HETERO = [
    "training.threads=1",
    "clients.count=3",
    "clients.speeds={name: list, values: [1.0, 2.0, 0.5]}",
    "clients.ranks={name: speed_tier}",
    "aggregator.name=hlora",
    "schedule={name: fedbuff, buffer_size: 2}",
]


class Killed(RuntimeError):
    """A simulated kill of the server process, raised from `on_version`."""


def run_killed(cfg, out: Path, at_version: int) -> None:
    """Run `cfg` into `out` until the process is "killed" when the global model reaches `at_version`.

    What the run saved by then (checkpoint, events) is what `run_experiment(..., resume=True)` starts from.
    """
    from fedlora.experiment import run_experiment

    def kill(server) -> None:
        if server.version == at_version:
            raise Killed(f"killed at version {at_version}")

    with pytest.raises(Killed):
        run_experiment(cfg, out=out, on_version=kill)


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    if not (GLUE / "MRPC" / "train.tsv").is_file():
        pytest.fail(f"GLUE data not found at {GLUE}; set FEDLORA_TEST_GLUE to the shared/data/glue directory")
    return GLUE


@pytest.fixture
def tiny_config(glue_dir, tmp_path):
    """A factory: the tiny config (configs/tiny.yaml) with overrides, writing under tmp_path."""
    from fedlora.config import load_config

    def make(*overrides: str):
        return load_config(
            REPO / "configs" / "tiny.yaml",
            [f"task.data_dir={glue_dir}", f"output.dir={tmp_path}", "output.progress=false", *overrides],
        )

    return make
