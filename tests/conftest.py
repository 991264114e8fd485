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
