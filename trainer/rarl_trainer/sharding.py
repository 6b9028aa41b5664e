"""FSDP2 sharding (``spec.model.sharding: fsdp``): how the trainers turn it on, and what a sharded run does differently.

How: through the HF Trainer's own FSDP2 path (accelerate's ``fsdp2_prepare_model``: ``fully_shard`` on
every module class in the model's ``_no_split_modules`` — the decoder layers, and a VLM's vision
blocks — then on the embeddings, the head and the root; bf16 compute through FSDP's mixed precision
when ``model.dtype`` resolves to bfloat16, gradients reduced in float32 into float32 master shards). TRL's GRPOTrainer
shards its reference model the same way (``trl.models.prepare_fsdp``) when ``grpo.beta`` > 0 and
the model is fully fine-tuned (LoRA's reference is an adapter of the same sharded model).

Why the CPU seam: accelerate builds an FSDP state only for GPU-like devices (``AcceleratorState``
skips the FSDP plugin for ``MULTI_CPU``) and the HF Trainer then wraps the model in DDP instead,
without a word. FSDP2 itself runs on CPU with gloo, so ``FSDPOnCPUMixin`` installs the same plugin
on a CPU accelerator: a sharded run on CPU takes the very code path a GPU run takes, which is how
the tests run it (two gloo processes).

Generation on a sharded model: FSDP2 gathers each layer's full weights in its forward and frees them
after (``reshard_after_forward``), so ``generate`` holds the sharded model plus about one gathered
layer (two with prefetching; the embeddings and head stay gathered for the call) — no second full
copy. Every rank must run the same number of forwards: ``generate`` is told the model is
FSDP-managed (``synced_gpus``: ranks that finished keep stepping until all have), and evaluation
gives every rank the same number of queries.

Checkpoints: each rank writes its own shards (``weights.WEIGHTS_DIR``, accelerate's ``optimizer_0/``,
torch distributed checkpoints). The export: ``gather_to_files`` gathers one tensor at a time while
the process group is up (a GPU holds one whole tensor extra at most) and rank 0 streams them into
local files of at most 1 GiB; after the last collective rank 0 loads them, strictly, into an
unsharded copy of the model on the CPU (``load_gathered``), which the export merges and saves.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from safetensors import safe_open
from safetensors.torch import save_file
from torch.distributed.tensor import DTensor

from rarl_trainer.config import ConfigError
from rarl_trainer.trl_seam import mark_fsdp_managed  # noqa: F401  (re-exported: the loop calls it from here)
from rarl_trainer.weights import REFERENCE_ADAPTER, check_fit, training_tensors

STATE_DICT_TYPE = "SHARDED_STATE_DICT"
"""Checkpoints of a sharded run stay sharded: no rank gathers the model or the optimizer state to save them."""

GATHER_FILE_BYTES = 1 << 30
"""``gather_to_files`` starts a new file past this size, so rank 0 holds at most this much of it at once."""


def sharded(spec) -> bool:
    """Whether the job shards its model (``spec.model.sharding: fsdp``)."""
    return spec.model.sharding == "fsdp"


def layer_classes(model) -> list[str]:
    """The module classes ``fully_shard`` wraps one by one: the model's ``_no_split_modules`` (decoder layers, vision blocks).

    Named as they are in the model now: ``fully_shard`` turns a ``Qwen2DecoderLayer`` into an
    ``FSDPQwen2DecoderLayer``, and a later stage's trainer looks the classes up in that model.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    wanted = set(getattr(base, "_no_split_modules", None) or [])
    if not wanted:
        raise ConfigError(f"{type(base).__name__} declares no _no_split_modules: FSDP cannot tell its layers; "
                         "use spec.model.sharding: none")
    names = {type(m).__name__ for m in model.modules() if any(c.__name__ in wanted for c in type(m).__mro__)}
    if not names:
        raise ConfigError(f"{type(base).__name__} has none of its _no_split_modules ({', '.join(sorted(wanted))}); "
                         "use spec.model.sharding: none")
    return sorted(names)


def fsdp_training_args(spec, model) -> dict[str, Any]:
    """The TrainingArguments fields that shard the model (empty for ``sharding: none``; fsdp needs ``model``)."""
    if not sharded(spec):
        return {}
    if model is None:
        raise ValueError("model.sharding: fsdp needs the model to name its layers")
    return dict(
        fsdp=True,
        fsdp_config={
            "version": 2,
            "transformer_layer_cls_to_wrap": layer_classes(model),
            "reshard_after_forward": True,
            "cpu_offload": bool(spec.model.cpu_offload),
            "state_dict_type": STATE_DICT_TYPE,
            # gradient checkpointing is transformers' own (spec.model.gradientCheckpointing), not FSDP's
            "activation_checkpointing": False,
        },
    )


def is_sharded_model(model) -> bool:
    """Whether ``model`` (or a submodule) has been through ``fully_shard`` (its parameters are DTensors)."""
    return any(isinstance(p, DTensor) for p in model.parameters())


class FSDPOnCPUMixin:
    """For HF ``Trainer`` subclasses: a CPU accelerator takes the FSDP plugin too (see the module docstring).

    On GPUs accelerate has already set it, and this does nothing.
    """

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        if self.args.fsdp_plugin_args is None:
            return
        state = self.accelerator.state
        plugin = getattr(state, "fsdp_plugin", None)
        if plugin is not None and not getattr(plugin, "rarl_on_cpu", False):
            reduce_in_float32(plugin)  # accelerate's own (GPUs), fresh for this trainer
            return

        if state.distributed_type not in (DistributedType.MULTI_CPU, DistributedType.FSDP):
            raise RuntimeError(f"spec.model.sharding: fsdp, but accelerate set up {state.distributed_type} "
                               "without FSDP; this trainer knows how to add it on CPU (gloo) only")
        # a fresh plugin per trainer, as accelerate makes on GPUs (the shared state still holds the last stage's)
        plugin = FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args)
        plugin.rarl_on_cpu = True
        if state.mixed_precision != "no":
            plugin.set_mixed_precision(state.mixed_precision)
            reduce_in_float32(plugin)

        state.distributed_type = DistributedType.FSDP
        state.fsdp_plugin = plugin
        # as accelerate does for GPUs: every later AcceleratorState() copies the type from PartialState's
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.is_fsdp_enabled = True


def reduce_in_float32(plugin) -> None:
    """Gradients reduce-scattered in float32 under bf16 compute (accelerate's policy reduces in bf16).

    Why: the float32 master shards should get the gradient a DDP run averages in float32, not one
    rounded to bf16's 8 bits on the way; only the gathered weights and the compute are bf16.
    """
    policy = plugin.mixed_precision_policy
    if policy is not None and not isinstance(policy, dict) and policy.param_dtype not in (None, torch.float32):
        plugin.mixed_precision_policy = dataclasses.replace(policy, reduce_dtype=torch.float32)


def copy_gathered(source, target, skip_adapters: tuple[str, ...] = ()) -> int:
    """Every rank (collective): ``source``'s training tensors, gathered whole one at a time, into ``target``'s.

    Strict: ``target`` (an unsharded copy of the model) must have exactly those tensors, shapes included.
    """
    wanted = training_tensors(source, skip_adapters)
    targets = training_tensors(target)
    check_fit("the sharded model", targets, set(wanted), {k: tuple(v.shape) for k, v in wanted.items()}, hint="")
    with torch.no_grad():
        for name, t in wanted.items():
            full = t.full_tensor() if isinstance(t, DTensor) else t
            targets[name].copy_(full.detach().to(dtype=targets[name].dtype, device=targets[name].device))
    return len(wanted)


def gather_to_files(model, folder: Path, is_main: bool, skip_adapters: tuple[str, ...] = (), dtype=None) -> None:
    """Every rank: the model's training tensors gathered whole one at a time; rank 0 writes them to ``folder``.

    Collective (every rank must call it, in the same order: each sharded tensor is one all-gather).
    Rank 0 keeps at most ``GATHER_FILE_BYTES`` of them in host memory before writing a safetensors
    file; a GPU never holds more than one gathered tensor extra. ``dtype`` casts floating tensors (a
    full fine-tuning export's dtype); ``skip_adapters`` are left out (TRL's KL reference adapter).
    """
    folder = Path(folder)
    if is_main:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("gathered-*.safetensors"):
            old.unlink()
    batch: dict[str, Any] = {}
    size, count = 0, 0

    def flush() -> None:
        nonlocal batch, size, count
        if batch:
            save_file(batch, str(folder / f"gathered-{count:05d}.safetensors"))
            count += 1
        batch, size = {}, 0

    for name, t in training_tensors(model, skip_adapters).items():
        full = t.full_tensor() if isinstance(t, DTensor) else t
        if not is_main:
            continue
        full = full.detach()
        if dtype is not None and full.is_floating_point():
            full = full.to(dtype)
        batch[name] = full.cpu().contiguous().clone()
        size += full.numel() * full.element_size()
        if size >= GATHER_FILE_BYTES:
            flush()
    if is_main:
        flush()
        (folder / "gathered.json").write_text(json.dumps({"files": count}))


def load_gathered(model, folder: Path) -> int:
    """Copy ``gather_to_files``' tensors into ``model`` (an unsharded copy), strictly; returns how many.

    The files must hold exactly the model's training tensors (for LoRA: its adapters but the KL
    reference), with their shapes, all checked before anything is copied: what the export writes is
    what was trained, or nothing.
    """
    folder = Path(folder)
    count = json.loads((folder / "gathered.json").read_text())["files"]
    expected = training_tensors(model, (REFERENCE_ADAPTER,))
    with ExitStack() as files:
        handles = [files.enter_context(safe_open(str(folder / f"gathered-{i:05d}.safetensors"), framework="pt"))
                   for i in range(count)]
        where = {name: fh for fh in handles for name in fh.keys()}
        check_fit(f"the gathered weights in {folder}", expected, set(where),
                  {name: tuple(fh.get_slice(name).get_shape()) for name, fh in where.items()}, hint="")
        with torch.no_grad():
            for name, target in expected.items():
                target.copy_(where[name].get_tensor(name).to(dtype=target.dtype, device=target.device))
    return len(expected)
