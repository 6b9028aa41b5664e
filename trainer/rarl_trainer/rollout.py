"""Fast GRPO rollouts: generate on LoRA-merged weights, train on the unmerged PEFT model.

Why: with TRL's transformers path every decode step of a PEFT model runs each adapted linear
twice (base + ``B @ (A @ x)``) plus PEFT's Python dispatch. No GPU has run this code yet, so
the GPU gain is unmeasured (``bench/bench_rollout.py`` measures it; on this project's CPU
machine see ``bench/RESULTS.md``).

Merge strategy (LoRA): **in place, around generation, restored exactly**.

* Before the generation call (``torch.no_grad``) PEFT's ``merge_adapter()`` folds
  ``W += scale * B @ A`` into the frozen base weights of the adapted layers only; the LoRA
  layers then forward through the base layer alone (no adapter matmuls, no dropout).
* After it, ``unmerge_adapter()`` clears PEFT's merged state and the base weights are copied
  back from a snapshot taken once per model (base weights are frozen under LoRA, so the
  snapshot never goes stale; it lives in pinned host memory on CUDA, so it costs no GPU
  memory, and one host-to-device copy of the adapted weights per step, ~0.1-0.2 s for a 3B
  model). Subtracting the delta alone is not exact in floating point (bf16: ~1 ulp of W per
  round trip, a random walk over thousands of steps on weights that must stay frozen); the
  copy makes the trainable model bit-identical after every generation (tested).
* "Refresh after every optimizer step" is then free: every generation merges the adapters as
  they are now, so the rollout weights are always the current policy, and no extra copy of
  the model exists on the GPU (the alternative, a persistent folded copy of the adapted
  weights, would cost ~5.5 GB more GPU memory on a 3B model, ~14 GB on a 7B one).
* Log-probs for the loss (old/ref/current) are computed by TRL after the call returns, on
  the unmerged PEFT model in train mode.

Full fine-tuning has no adapters: generation simply runs on the training weights in eval
mode under ``no_grad``, so no second copy of the model exists either.

On CUDA (only) the call also uses a static KV cache sized to a bucketed worst case
(``max_cache_len``: ``grpo.maxPromptLength`` when set, else the prompt length rounded up to
``CACHE_BUCKET``, + max completion length) and
transformers' auto-compiled decode step (``torch.compile``, cached on the model object, so
compiled once per run across stages; recompiles are bounded by the number of prompt-length
buckets met: exactly one cache size with ``maxPromptLength``). If the compiled/static path
raises, the engine warns once and keeps going with merged weights + dynamic cache.

Evaluation (``evaluation.generate_answers``) uses the same merge (dynamic cache: its batches
vary in size) and the same prompt truncation (``truncation``).

Sampling parameters are TRL's own generation config (temperature, top-p, max completion
length, the suppress_tokens that keep a VLM from sampling vision placeholders); TRL already
generates all prompts x generations of an optimizer step in one call (generation batch =
per-device batch x steps_per_generation, with steps_per_generation = gradient accumulation).
"""

from __future__ import annotations

import copy
import functools
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

ENGINES = ("auto", "trl", "merged", "vllm")
CACHE_BUCKET = 256

# Snapshots of the frozen base weights of adapted layers, one per model object (shared by the
# trainers of successive stages, which train the same model).
_SNAPSHOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class RolloutEngineError(Exception):
    """The requested rollout engine cannot run here (a configuration error: exit code 2)."""


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def resolve_engine(name: str, *, cuda: bool | None = None, vllm: bool | None = None) -> str:
    """``auto`` -> ``merged``; ``vllm`` is checked (importable, CUDA) and refused with a clear message."""
    if name not in ENGINES:
        raise RolloutEngineError(f"grpo.rolloutEngine: unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    if name == "auto":
        return "merged"
    if name == "vllm":
        if vllm is None:
            vllm = vllm_available()
        if not vllm:
            raise RolloutEngineError(
                "grpo.rolloutEngine is 'vllm' but vLLM is not installed in the trainer image; install vllm "
                "(matching the image's torch) or use rolloutEngine 'auto'/'merged'"
            )
        if cuda is None:
            import torch

            cuda = torch.cuda.is_available()
        if not cuda:
            raise RolloutEngineError("grpo.rolloutEngine 'vllm' needs a GPU; use 'auto'/'merged' on CPU")
    return name


def vllm_config_kwargs() -> dict[str, Any]:
    """GRPOConfig arguments of TRL's colocated vLLM mode (vLLM shares the training GPUs)."""
    return dict(use_vllm=True, vllm_mode="colocate", vllm_enable_sleep_mode=False)


def is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_adapter") and hasattr(model, "unmerge_adapter")


def tuner_layers(model) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def any_merged(model) -> bool:
    """Whether any adapter layer is merged right now (must be False outside generation)."""
    if not is_peft_model(model):
        return False
    return any(getattr(m, "merged", False) for m in tuner_layers(model))


@dataclass
class _Snapshot:
    params: list  # the live parameters (base weights and biases of adapted layers)
    copies: list  # their frozen values (pinned host memory on CUDA)
    nbytes: int


def _take_snapshot(model) -> _Snapshot:
    import torch

    params, copies, nbytes, seen = [], [], 0, set()
    for layer in tuner_layers(model):
        base = layer.get_base_layer()
        for p in (getattr(base, "weight", None), getattr(base, "bias", None)):
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            t = p.detach()
            if t.is_cuda:
                c = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=True)
                c.copy_(t)
            else:
                c = t.clone()
            params.append(p)
            copies.append(c)
            nbytes += t.numel() * t.element_size()
    return _Snapshot(params, copies, nbytes)


def _snapshot(model) -> _Snapshot:
    snap = _SNAPSHOTS.get(model)
    if snap is None or any(p.requires_grad for p in snap.params):
        # A base weight that trains (unusual with LoRA) makes the snapshot stale: retake it each time.
        snap = _take_snapshot(model)
        _SNAPSHOTS[model] = snap
    return snap


@functools.cache
def _compile_config():
    """One object for the whole run: transformers recompiles when the config object differs."""
    from transformers import CompileConfig

    return CompileConfig(fullgraph=False, dynamic=False, mode="reduce-overhead")


class RolloutEngine:
    """Merged-weights generation around TRL's own ``generate`` call (see the module docstring).

    ``static_cache`` and ``compile`` default to ``torch.cuda.is_available()``; they are only ever
    enabled on CUDA (transformers does not auto-compile on CPU anyway).
    """

    def __init__(self, model, *, static_cache: bool | None = None, compile: bool | None = None,
                 max_prompt_length: int | None = None):
        import torch

        self.model = model
        self.max_prompt_length = max_prompt_length
        cuda = torch.cuda.is_available()
        self.static_cache = cuda if static_cache is None else (bool(static_cache) and cuda)
        self.compile = self.static_cache if compile is None else (bool(compile) and self.static_cache)
        self.merge = is_peft_model(model)
        self.calls = 0
        self.fallback_reason: str | None = None
        self.stats = {"merge_s": 0.0, "restore_s": 0.0}

    @property
    def fast_path(self) -> bool:
        return self.static_cache

    def disable_fast_path(self, reason: str) -> None:
        if self.fallback_reason is None:
            print(f"rarl: warning: static-cache/compiled rollouts failed ({reason}); continuing with merged weights "
                  "and a dynamic cache", file=sys.stderr)
        self.fallback_reason = reason
        self.static_cache = False
        self.compile = False

    def generation_config(self, base, max_prompt_len: int):
        """TRL's generation config (same sampling) with the static cache / compile switches of this engine."""
        cfg = copy.deepcopy(base)
        if self.static_cache:
            cfg.cache_implementation = "static"
            if self.max_prompt_length is not None and max_prompt_len <= self.max_prompt_length:
                bucket = self.max_prompt_length  # prompts are truncated to it: one cache size, one compile
            else:
                bucket = -(-max(1, max_prompt_len) // CACHE_BUCKET) * CACHE_BUCKET
            cfg.max_cache_len = bucket + int(cfg.max_new_tokens or 0)
            cfg.disable_compile = not self.compile
            if self.compile:
                cfg.compile_config = _compile_config()
        return cfg

    @contextmanager
    def merged(self) -> Iterator[None]:
        """Adapters merged into the base weights (LoRA) and the model in eval mode; exact restore on exit."""
        import time

        import torch

        model = self.model
        was_training = model.training
        merged = False
        snap = None
        with torch.no_grad():
            t0 = time.perf_counter()
            if self.merge:
                snap = _snapshot(model)
                model.merge_adapter()
                merged = True
            model.eval()
            self.stats["merge_s"] += time.perf_counter() - t0
        try:
            yield
        finally:
            with torch.no_grad():
                t0 = time.perf_counter()
                model.train(was_training)
                if merged:
                    model.unmerge_adapter()
                    for p, c in zip(snap.params, snap.copies, strict=True):
                        p.data.copy_(c, non_blocking=True)
                self.stats["restore_s"] += time.perf_counter() - t0
            self.calls += 1

    @contextmanager
    def generating(self, trainer, prompt_ids: list[list[int]]) -> Iterator[None]:
        """Around ``GRPOTrainer._generate_single_turn``: merged weights + this engine's generation config."""
        max_len = max((len(p) for p in prompt_ids), default=1)
        pad = getattr(trainer, "pad_to_multiple_of", None)
        if pad:
            max_len = -(-max_len // pad) * pad
        saved_cfg = trainer.generation_config
        saved_kwargs = getattr(trainer, "generation_kwargs", None)
        trainer.generation_config = self.generation_config(saved_cfg, max_len)
        if saved_kwargs is not None:
            # TRL also overrides the model's own generation config with these for the call.
            kwargs = dict(saved_kwargs)
            if self.static_cache:
                kwargs["cache_implementation"] = "static"
            trainer.generation_kwargs = kwargs
        try:
            with self.merged():
                yield
        finally:
            trainer.generation_config = saved_cfg
            if saved_kwargs is not None:
                trainer.generation_kwargs = saved_kwargs


def generate(model, engine: RolloutEngine | None = None, generation_config=None, **inputs):
    """``model.generate`` on merged weights (tests and tools; the trainer goes through ``generating``)."""
    engine = engine or RolloutEngine(model)
    cfg = generation_config
    if cfg is not None:
        cfg = engine.generation_config(cfg, int(inputs["input_ids"].shape[1]))
    with engine.merged():
        return model.generate(**inputs, generation_config=cfg) if cfg is not None else model.generate(**inputs)
