"""What feeds the classifier of an encoder: BERT's [CLS] pooler, trained or not, or mean pooling.

all-MiniLM-L6-v2 was trained as a sentence embedder with mean pooling over tokens; its BERT pooler (dense +
tanh on [CLS]) was never trained for that, so a frozen pooler hands the head a poor feature. `mean` replaces
the pooler by the masked mean of the last hidden states, the representation the model was trained to give;
`cls_trained` keeps the pooler and trains it (it travels with the head).
"""

from __future__ import annotations

from typing import Literal

import torch

from fedlora.errors import ConfigError

Pooling = Literal["cls", "cls_trained", "mean"]


class MeanPooler(torch.nn.Module):
    """Masked mean over tokens; the attention mask is handed in by a pre-hook on the encoder's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden.float()
        if self.mask is None:
            return hidden.mean(dim=1)
        mask = self.mask[:, : hidden.shape[1]].to(hidden.dtype).unsqueeze(-1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def encoder_of(model) -> torch.nn.Module:
    base = getattr(model, model.base_model_prefix, None)
    if base is None or not hasattr(base, "pooler"):
        raise ConfigError(
            f"model.pooling: {model.config.model_type} models have no BERT-style pooler to replace; "
            "use model.pooling: cls"
        )
    return base


def use_mean_pooling(model) -> None:
    encoder = encoder_of(model)
    pooler = MeanPooler()
    encoder.pooler = pooler

    def keep_mask(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        pooler.mask = mask if mask is not None else (args[1] if len(args) > 1 else None)

    encoder.register_forward_pre_hook(keep_mask, with_kwargs=True)


def trainable_modules(model, pooling: Pooling) -> list[str]:
    """Modules besides the head that are trained and exchanged (peft `modules_to_save` names)."""
    if pooling != "cls_trained":
        return []
    encoder_of(model)
    return ["pooler"]
