"""One frozen base model with a LoRA slot per rank, into which any client's adapter is swapped.

A simulated client is just an `Adapter`; training it means copying its factors into the slot of its rank,
training the slot, and copying them out. The base weights exist once per process.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer

from fedlora.errors import ConfigError
from fedlora.jobs import TRAINS, Trains
from fedlora.lora.adapter import Adapter, LoRAFactors

PEFT_PREFIX = "base_model.model."
HEAD_NAMES = ("classifier", "score")


def slot_name(rank: int) -> str:
    return f"rank_{rank}"


class ModelHost:
    def __init__(
        self,
        model,
        target_modules: list[str],
        alpha: float,
        dropout: float,
        train_head: bool,
        max_rank: int,
        task_type: str | None = None,
        extra_trainables: tuple[str, ...] = (),
    ):
        """`task_type` is peft's (e.g. "CAUSAL_LM"): recorded in the exported adapter_config.json, so
        AutoPeftModelForCausalLM knows what to load; None (classification) keeps peft's plain PeftModel.
        `extra_trainables` are further modules trained and exchanged with the head (e.g. BERT's pooler)."""
        self.alpha = alpha
        self.task_type = task_type
        self.dropout = dropout
        self.target_modules = list(target_modules)
        self.head_modules = [h for h in HEAD_NAMES if hasattr(model, h)] if train_head else []
        self.head_modules += list(extra_trainables)
        self.max_rank = max_rank
        self.model: PeftModel = get_peft_model(model, self._lora_config(max_rank), adapter_name=slot_name(max_rank))
        self._slots = {max_rank}
        # updates folded into the frozen base weights (float64 sums) and the original weights
        self._base_delta: dict[str, torch.Tensor] = {}
        self._base_original: dict[str, torch.Tensor] = {}
        self._base_version = 0  # the folds (engine.frozen_base) the base weights hold now
        self.model.eval()  # dropout only while a client trains (train_local switches modes)
        self.layer_shapes = self._layer_shapes()
        if not self.layer_shapes:
            raise ConfigError(f"lora.target_modules={self.target_modules} matched no linear layer of the model")
        width = min(min(s) for s in self.layer_shapes.values())
        if max_rank > width:
            raise ConfigError(f"lora.rank={max_rank} exceeds the narrowest adapted layer's width {width}")

    def _lora_config(self, rank: int) -> LoraConfig:
        return LoraConfig(
            r=rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            modules_to_save=self.head_modules or None,
            bias="none",
            task_type=self.task_type,
        )

    def _lora_modules(self):
        for name, module in self.model.named_modules():
            if isinstance(module, LoraLayer) and name.startswith(PEFT_PREFIX):
                yield name[len(PEFT_PREFIX) :], module

    def _layer_shapes(self) -> dict[str, tuple[int, int]]:
        shapes = {}
        for name, module in self._lora_modules():
            base = module.get_base_layer()
            shapes[name] = (int(base.out_features), int(base.in_features))
        return dict(sorted(shapes.items()))

    def check_rank(self, rank: int, field: str = "clients.ranks") -> None:
        width = min(min(s) for s in self.layer_shapes.values())
        if rank < 1 or rank > width:
            raise ConfigError(f"{field}: rank {rank} is outside 1..{width} (the narrowest adapted layer)")

    def ensure_slot(self, rank: int) -> str:
        name = slot_name(rank)
        if rank not in self._slots:
            self.check_rank(rank)
            self.model.add_adapter(name, self._lora_config(rank))
            self._slots.add(rank)
        return name

    def extra_params(self, slot: str) -> dict[str, torch.nn.Parameter]:
        """The slot's non-LoRA trainables (the head), keyed by their name in the plain model."""
        out = {}
        marker = f".modules_to_save.{slot}."
        for name, p in self.model.named_parameters():
            if marker in name:
                out[name[len(PEFT_PREFIX) :].replace(marker, ".")] = p
        return dict(sorted(out.items()))

    def head_template(self) -> dict[str, torch.Tensor]:
        """The model's initial head weights: what a fresh global adapter starts from."""
        return {k: v.detach().clone() for k, v in self.extra_params(slot_name(self.max_rank)).items()}

    def load(self, adapter: Adapter) -> str:
        """Copy `adapter` into the slot of its rank and make that slot active; returns the slot name."""
        ranks = set(adapter.ranks.values())
        if len(ranks) != 1:
            raise ConfigError(f"an adapter loaded into the model needs one rank for all layers, got {sorted(ranks)}")
        rank = ranks.pop()
        slot = self.ensure_slot(rank)
        self.model.set_adapter(slot)
        modules = dict(self._lora_modules())
        if set(modules) != set(adapter.layers):
            missing = sorted(set(modules) ^ set(adapter.layers))[:3]
            raise ConfigError(f"adapter layers do not match the model's LoRA layers (e.g. {missing})")
        with torch.no_grad():
            for name, f in adapter.layers.items():
                m = modules[name]
                m.lora_A[slot].weight.copy_(f.A)
                m.lora_B[slot].weight.copy_(f.B)
                m.lora_alpha[slot] = f.alpha
                m.scaling[slot] = f.alpha / f.rank
            params = self.extra_params(slot)
            if set(params) != set(adapter.extras):
                raise ConfigError(f"adapter extras {sorted(adapter.extras)} != model trainables {sorted(params)}")
            for name, t in adapter.extras.items():
                params[name].copy_(t)
        return slot

    def extract(self, slot: str) -> Adapter:
        layers = {}
        for name, m in self._lora_modules():
            if slot in m.lora_A:
                layers[name] = LoRAFactors(
                    m.lora_A[slot].weight.detach().clone(),
                    m.lora_B[slot].weight.detach().clone(),
                    float(m.lora_alpha[slot]),
                )
        extras = {k: v.detach().clone() for k, v in self.extra_params(slot).items()}
        return Adapter(layers=dict(sorted(layers.items())), extras=extras)

    def trainable(self, slot: str, trains: Trains = "AB") -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """(LoRA parameters, head parameters) of `slot`, with requires_grad set; everything else frozen.

        `trains` names the LoRA factors that train ("AB", "A" or "B": the aggregator's `trains` hook)."""
        if trains not in TRAINS:
            raise ValueError(f"trains must be one of {TRAINS}, got {trains!r}")
        lora, head = [], []
        for _, m in self._lora_modules():
            for sub in m.lora_A.values():
                sub.weight.requires_grad_(False)
            for sub in m.lora_B.values():
                sub.weight.requires_grad_(False)
            if slot in m.lora_A:
                m.lora_A[slot].weight.requires_grad_("A" in trains)
                m.lora_B[slot].weight.requires_grad_("B" in trains)
                lora += [m.lora_A[slot].weight] if "A" in trains else []
                lora += [m.lora_B[slot].weight] if "B" in trains else []
        for name, p in self.model.named_parameters():
            if ".modules_to_save." in name:
                p.requires_grad_(f".modules_to_save.{slot}." in name)
        head = list(self.extra_params(slot).values())
        return lora, head

    def use_base(self, version: int, deltas: Mapping[str, torch.Tensor]) -> None:
        """Set the frozen base to original + `deltas`, the folds up to `version` (engine.frozen_base).

        A no-op when that version is set already: jobs and evaluations of one version switch nothing."""
        if version == self._base_version:
            return
        self.load_base_state(dict(deltas))
        self._base_version = version

    def base_state(self) -> dict[str, torch.Tensor]:
        """The folded delta per layer (float64) the base weights hold now."""
        return {name: t.clone() for name, t in sorted(self._base_delta.items())}

    def load_base_state(self, state: dict[str, torch.Tensor]) -> None:
        """Set the base weights to original + `state` (float64 sums): bit for bit the same in any process."""
        unknown = sorted(set(state) - set(self.layer_shapes))
        if unknown:
            raise ConfigError(f"checkpoint base delta names layers the model lacks (e.g. {unknown[:3]})")
        self._base_delta = {name: t.to(torch.float64).clone() for name, t in state.items()}
        self._apply_base_delta()

    def _apply_base_delta(self) -> None:
        with torch.no_grad():
            for name, module in self._lora_modules():
                weight = module.get_base_layer().weight
                if name not in self._base_original:
                    if name not in self._base_delta:
                        continue
                    self._base_original[name] = weight.detach().clone()
                original = self._base_original[name]
                delta = self._base_delta.get(name)
                merged = original if delta is None else (original.to(torch.float64) + delta).to(original.dtype)
                weight.copy_(merged)

    def save_peft(self, adapter: Adapter, directory) -> None:
        """Write `adapter` in peft's own format, so `PeftModel.from_pretrained(base, directory)` loads it."""
        import json
        from pathlib import Path

        slot = self.load(adapter)
        out = Path(directory)
        self.model.save_pretrained(str(out), selected_adapters=[slot])
        # save_pretrained puts non-default adapters in a subfolder; flatten so the directory itself loads
        sub = out / slot
        if sub.is_dir():
            for f in sub.iterdir():
                f.replace(out / f.name)
            sub.rmdir()
        cfg_path = out / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["lora_alpha"] = adapter.layers[next(iter(adapter.layers))].alpha
        cfg_path.write_text(json.dumps(cfg, indent=2))
