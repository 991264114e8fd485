"""Batched local training: several jobs trained together, step by step, over one frozen base model.

Multi-adapter batching as S-LoRA/Punica serve adapters and mLoRA trains them: at every step the batches of
all jobs still training are stacked (padded to the widest), the frozen base runs once over the stack, and
each row goes through its own client's LoRA factors and head. Everything that makes a job a job stays per
job, so its result is the one `train_local` gives on its own, up to float rounding:

- LoRA: each adapted layer's base output is computed once for the stack; the delta
  scaling_c * B_c A_c dropout_c(x_c) is added on client c's rows (its own rank, alpha and factors).
- Head (and any other trainable module, e.g. BERT's pooler): client c's rows go through the module with
  client c's own weights (`torch.func.functional_call`).
- Loss: each job's own mean loss over its own rows (and tokens); the stack's loss is their sum, so each
  client's gradient is the gradient of its own loss. Each job has its own AdamW (and its param groups,
  learning-rate schedule and weight decay), its own gradient clipping, its own step count.
- Dropout: every random draw of client c comes from c's own generator, seeded exactly as `train_local`
  seeds torch for the job, and is drawn on c's own rows at c's own sequence length, in the order the
  forward pass meets them. So the masks are bit for bit those of the sequential job (also inside
  scaled-dot-product attention, which runs per client: it holds no weights).
- Sequence padding: at each step the jobs are grouped by their batch's sequence width into buckets of
  `WIDTH_BUCKET` tokens (`width_groups`), and each group is one stack, padded to its widest batch; padded
  positions are masked, and every per-client operation above sees the client's rows cropped to its own
  width. One stack over all jobs padded every row to the widest batch of all (near the truncation length
  with many clients): 100 MiniLM clients of batch 4 on MRPC trained at 0.13x the sequential speed on a CPU,
  0.69x with the buckets (docs/scale.md, Throughput). Each per-client crop of a stacked activation is one
  `split` (`_Stack.crops`), whose backward is linear in the clients of a stack.

What differs from the sequential job is only the float rounding of the frozen base's matrix products over
a larger batch (and of attention over masked padding): docs/scale.md states the measured tolerance.

Layout assumptions (those of Hugging Face encoders and decoders): activations are (batch, sequence, ...)
for 3-d tensors and (batch, heads, sequence, sequence) for attention scores; the stacked batch is dim 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from peft.tuners.lora import LoraLayer
from peft.utils import ModulesToSaveWrapper

from fedlora.data.tokenized import TokenizedData
from fedlora.jobs import TRAINS, Trains
from fedlora.lora.adapter import Adapter, LoRAFactors
from fedlora.privacy.client import privatize
from fedlora.seeding import derive_seed, numpy_rng
from fedlora.training.host import PEFT_PREFIX, ModelHost
from fedlora.training.local import (
    LocalTrainingSpec,
    batch_order,
    group_batches_by_length,
)
from fedlora.training.lr_schedule import job_progress, lr_factor

#: the sequence widths one stack spans: at most this many padding tokens per row beyond a job's own batch
WIDTH_BUCKET = 16


def width_groups(widths: Sequence[int], bucket: int = WIDTH_BUCKET) -> list[list[int]]:
    """Indices of `widths` grouped by (width - 1) // bucket, narrowest group first, in index order within a
    group: which jobs share one stacked pass. Pure, so the grouping of a step is reproducible."""
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(widths):
        groups.setdefault((int(w) - 1) // bucket, []).append(i)
    return [groups[k] for k in sorted(groups)]


@dataclass(frozen=True)
class BatchJob:
    """One job of a batch: what `train_local` takes for it."""

    adapter: Adapter
    indices: np.ndarray
    steps: int
    client: int
    client_job: int
    trains: Trains = "AB"
    start_version: int = 0


class _Client:
    """One job's trainable tensors, optimizer, random state and batches."""

    def __init__(self, job: BatchJob, host: ModelHost, data: TokenizedData, spec: LocalTrainingSpec, dtype):
        if job.trains not in TRAINS:
            raise ValueError(f"trains must be one of {TRAINS}, got {job.trains!r}")
        self.job = job
        self.layers: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        lora_params: list[torch.Tensor] = []
        for name, _ in host._lora_modules():  # the order of host.trainable: A then B of every layer
            f = job.adapter.layers[name]
            A = f.A.detach().to(dtype).clone().requires_grad_("A" in job.trains)
            B = f.B.detach().to(dtype).clone().requires_grad_("B" in job.trains)
            self.layers[name] = (A, B, f.alpha / f.rank)
            lora_params += [A] if "A" in job.trains else []
            lora_params += [B] if "B" in job.trains else []
        self.alphas = {name: f.alpha for name, f in job.adapter.layers.items()}
        self.head = {k: v.detach().clone().requires_grad_(True) for k, v in sorted(job.adapter.extras.items())}
        head_params = list(self.head.values())
        groups = [{"params": lora_params, "lr": spec.lr}]
        if head_params:
            groups.append({"params": head_params, "lr": spec.head_lr or spec.lr})
        self.optimizer = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay)
        self.base_lrs = [g["lr"] for g in groups]
        self.params = lora_params + head_params
        # the job's dropout stream: the state `seed_torch(seed, "dropout", client, client_job)` gives torch
        gen = torch.Generator().manual_seed(derive_seed(spec.seed, "dropout", job.client, job.client_job))
        self.rng_state = gen.get_state()
        batches = batch_order(
            job.indices, job.steps, spec.batch_size, numpy_rng(spec.seed, "batches", job.client, job.client_job)
        )
        if spec.group_by_length:
            rng = numpy_rng(spec.seed, "length-groups", job.client, job.client_job)
            batches = group_batches_by_length(batches, data.lengths, rng)
        self.batches = batches
        self.losses: list[float] = []

    def result(self) -> Adapter:
        layers = {
            name: LoRAFactors(A.detach().clone(), B.detach().clone(), float(self.alphas[name]))
            for name, (A, B, _) in self.layers.items()
        }
        return Adapter(
            layers=dict(sorted(layers.items())), extras={k: v.detach().clone() for k, v in self.head.items()}
        )


class _Stack:
    """Where each active client's rows sit in the stacked batch, and how to crop and pad its tensors."""

    def __init__(self, clients: list[_Client], rows: list[int], widths: list[int]):
        self.clients = clients
        self.rows = rows
        self.widths = widths
        self.width = max(widths)
        self.total = sum(rows)

    def __len__(self) -> int:
        return len(self.clients)

    def seq_dims(self, t: torch.Tensor) -> tuple[int, ...]:
        if t.dim() == 3:
            return (1,) if t.shape[1] == self.width else ()
        if t.dim() == 4:
            return tuple(d for d in (2, 3) if t.shape[d] == self.width)
        return ()

    def crops(self, t: torch.Tensor, dims: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """Each client's rows of the stacked `t`, cut to its own sequence width (a broadcast batch dim of size
        1 is kept for every client). One `split` along the stack: its backward concatenates the clients'
        gradients once, where a slice per client would allocate a zero gradient of the whole stack for each
        client (quadratic in the clients per stack)."""
        dims = self.seq_dims(t) if dims is None else dims
        parts = t.split(self.rows, dim=0) if t.shape[0] == self.total else [t] * len(self.rows)
        out = []
        for i, part in enumerate(parts):
            for d in dims:
                if part.shape[d] == self.width:
                    part = part.narrow(d, 0, self.widths[i])
            out.append(part)
        return out

    def pad(self, t: torch.Tensor, i: int, dims: tuple[int, ...]) -> torch.Tensor:
        missing = self.width - self.widths[i]
        if not missing:
            return t
        for d in dims:
            if t.shape[d] == self.widths[i]:
                shape = list(t.shape)
                shape[d] = missing
                t = torch.cat([t, t.new_zeros(shape)], dim=d)
        return t

    @contextlib.contextmanager
    def rng(self, i: int) -> Iterator[None]:
        """Torch's global generator holds client i's dropout stream while a draw of client i is made."""
        client = self.clients[i]
        torch.random.set_rng_state(client.rng_state)
        try:
            yield
        finally:
            client.rng_state = torch.random.get_rng_state()


class _Patches:
    """Swaps the multi-client forward into the peft model for the duration of a batched step."""

    def __init__(self, host: ModelHost):
        self.host = host
        self.stack: _Stack | None = None
        self.inside = False  # inside one client's computation: draws go straight to torch
        self.lora: list[tuple[str, LoraLayer]] = list(host._lora_modules())
        self.wrappers: list[tuple[str, ModulesToSaveWrapper]] = [
            (name[len(PEFT_PREFIX) :], m)
            for name, m in host.model.named_modules()
            if isinstance(m, ModulesToSaveWrapper) and name.startswith(PEFT_PREFIX)
        ]
        self._dropout = F.dropout
        self._sdpa = F.scaled_dot_product_attention

    # ----- per-client pieces -------------------------------------------------------------------------------
    def _lora_forward(self, name: str, module: LoraLayer):
        dropout_p = 0.0
        for drop in module.lora_dropout.values():
            dropout_p = float(getattr(drop, "p", 0.0))
            break

        def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            result = module.base_layer(x, *args, **kwargs)
            stack = self.stack
            deltas = []
            dims = stack.seq_dims(x)
            for i, (client, xc) in enumerate(zip(stack.clients, stack.crops(x, dims), strict=True)):
                A, B, scaling = client.layers[name]
                xc = xc.to(A.dtype)
                if dropout_p > 0.0 and module.training:
                    with stack.rng(i):
                        xc = self._dropout(xc, dropout_p, True)
                deltas.append(stack.pad(F.linear(F.linear(xc, A), B) * scaling, i, dims))
            return result + torch.cat(deltas, dim=0).to(result.dtype)

        return forward

    def _wrapper_forward(self, path: str, wrapper: ModulesToSaveWrapper):
        slot = next(iter(wrapper.modules_to_save))
        module = wrapper.modules_to_save[slot]
        prefix = path + "."

        def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            stack = self.stack
            outs = []
            dims = stack.seq_dims(x)
            for i, (client, xc) in enumerate(zip(stack.clients, stack.crops(x, dims), strict=True)):
                params = {k[len(prefix) :]: v for k, v in client.head.items() if k.startswith(prefix)}
                self.inside = True
                try:
                    with stack.rng(i):
                        out = torch.func.functional_call(module, params, (xc, *args), kwargs)
                finally:
                    self.inside = False
                outs.append(stack.pad(out, i, dims))
            return torch.cat(outs, dim=0)

        return forward

    def dropout(self, input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
        stack = self.stack
        if self.inside or stack is None or not training or p == 0.0 or input.shape[0] != stack.total:
            return self._dropout(input, p, training, inplace)
        outs = []
        dims = stack.seq_dims(input)
        for i, part in enumerate(stack.crops(input, dims)):
            with stack.rng(i):
                outs.append(stack.pad(self._dropout(part, p, True), i, dims))
        return torch.cat(outs, dim=0)

    def sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, *args, **kwargs):
        stack = self.stack
        if self.inside or stack is None or dropout_p == 0.0 or query.shape[0] != stack.total:
            return self._sdpa(query, key, value, attn_mask, dropout_p, *args, **kwargs)
        outs = []
        qs, ks, vs = (stack.crops(t, (2,)) for t in (query, key, value))
        masks = stack.crops(attn_mask, (2, 3)) if attn_mask is not None else [None] * len(stack)
        for i, (q, k, v, mask) in enumerate(zip(qs, ks, vs, masks, strict=True)):
            if mask is not None:
                if mask.dtype == torch.bool and bool(mask.all()):
                    mask = None  # no padding in this client's own batch: as the sequential call sees it
                elif mask.dtype != torch.bool and bool((mask == 0).all()):
                    mask = None
            with stack.rng(i):
                out = self._sdpa(q, k, v, mask, dropout_p, *args, **kwargs)
            outs.append(stack.pad(out, i, (2,)))
        return torch.cat(outs, dim=0)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        saved = []
        for name, m in self.lora:
            saved.append((m, m.__dict__.get("forward")))
            m.forward = self._lora_forward(name, m)
        for path, w in self.wrappers:
            saved.append((w, w.__dict__.get("forward")))
            w.forward = self._wrapper_forward(path, w)
        F.dropout, F.scaled_dot_product_attention = self.dropout, self.sdpa
        try:
            yield
        finally:
            F.dropout, F.scaled_dot_product_attention = self._dropout, self._sdpa
            for m, fwd in saved:
                if fwd is None:
                    del m.forward
                else:
                    m.forward = fwd


def _stack_inputs(batches: list[dict[str, torch.Tensor]], width: int) -> dict[str, torch.Tensor]:
    out = {}
    for key in batches[0]:
        parts = []
        for b in batches:
            t = b[key]
            if t.dim() >= 2 and t.shape[1] < width:
                value = -100 if key == "labels" else 0
                t = torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)
            parts.append(t)
        out[key] = torch.cat(parts, dim=0)
    return out


def _client_loss(host: ModelHost, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss the model computes for one client's own rows (its forward with `labels`)."""
    model = host.model.get_base_model()
    config = model.config
    if host.task_type == "CAUSAL_LM":
        from transformers.loss.loss_utils import ForCausalLMLoss

        return ForCausalLMLoss(logits, labels, vocab_size=config.vocab_size)
    num_labels = config.num_labels
    problem = config.problem_type
    if problem is None:
        if num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
        config.problem_type = problem  # as the model's own forward records it
    if problem == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze())
        return F.mse_loss(logits, labels)
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels)


def _train_step(
    host: ModelHost,
    patches: _Patches,
    active: list[_Client],
    inputs: list[dict[str, torch.Tensor]],
    step: int,
    spec: LocalTrainingSpec,
) -> None:
    """One optimizer step of every job in `active`, in one stacked pass over the frozen base."""
    widths = [int(b["input_ids"].shape[1]) for b in inputs]
    rows = [int(b["input_ids"].shape[0]) for b in inputs]
    stack = _Stack(active, rows, widths)
    stacked = _stack_inputs(inputs, stack.width)
    labels = stacked.pop("labels")
    for c in active:
        factor = lr_factor(
            job_progress(c.job.start_version, step, c.job.steps, spec.total_versions),
            spec.lr_schedule,
            spec.warmup_ratio,
        )
        for g, base in zip(c.optimizer.param_groups, c.base_lrs, strict=True):
            g["lr"] = base * factor
    patches.stack = stack
    try:
        logits = host.model(**stacked).logits
        client_logits = stack.crops(logits, (1,) if logits.dim() == 3 else ())
        client_labels = stack.crops(labels, (1,) if labels.dim() == 2 else ())
        losses = [_client_loss(host, lg, lb) for lg, lb in zip(client_logits, client_labels, strict=True)]
        for c in active:
            c.optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
    finally:
        patches.stack = None
    for c, loss in zip(active, losses, strict=True):
        if spec.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(c.params, spec.max_grad_norm)
        c.optimizer.step()
        c.losses.append(float(loss.detach()))


def train_batched(
    host: ModelHost, jobs: Sequence[BatchJob], data: TokenizedData, spec: LocalTrainingSpec
) -> list[tuple[Adapter, dict[str, float]]]:
    """Train `jobs` together on the host's frozen base (as it is set now); one (adapter, metrics) per job,
    each equal to `train_local` of that job up to float rounding (module docstring)."""
    if not jobs:
        return []
    dtype = next(p for _, m in host._lora_modules() for p in m.lora_A.parameters()).dtype
    clients = [_Client(job, host, data, spec, dtype) for job in jobs]
    patches = _Patches(host)
    model = host.model
    for p in model.parameters():  # the frozen base and the slots never train here: clients hold the tensors
        p.requires_grad_(False)
    saved_rng = torch.random.get_rng_state()
    model.train()
    try:
        with patches.active():
            for step in range(max(job.steps for job in jobs)):
                active = [c for c in clients if step < len(c.batches)]
                inputs = [data.batch(c.batches[step]) for c in active]
                for group in width_groups([int(b["input_ids"].shape[1]) for b in inputs], WIDTH_BUCKET):
                    _train_step(host, patches, [active[k] for k in group], [inputs[k] for k in group], step, spec)
    finally:
        model.eval()
        torch.random.set_rng_state(saved_rng)
    out = []
    for c in clients:
        losses = c.losses
        metrics = {
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "train_loss_first": losses[0] if losses else float("nan"),
            "train_loss_last": losses[-1] if losses else float("nan"),
        }
        trained = c.result()
        if spec.privacy is not None:  # on the client, before anything leaves it, as train_local does
            trained, _ = privatize(trained, c.job.adapter, c.job.trains, spec.privacy, c.job.client, c.job.client_job)
        out.append((trained, metrics))
    return out
