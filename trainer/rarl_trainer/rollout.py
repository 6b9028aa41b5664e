"""Fast GRPO rollouts: generate on LoRA-merged weights, train on the unmerged PEFT model.

Why: with TRL's transformers path every decode step of a PEFT model runs each adapted linear
twice (base + ``B @ (A @ x)``) plus PEFT's Python dispatch; on merged weights it runs once.

Merge strategy (LoRA): **in place, around generation, restored exactly**. Before TRL's generation
call (``torch.no_grad``) PEFT's ``merge_adapter()`` folds ``W += scale * B @ A`` into the frozen base
weights of the adapted layers; afterwards ``unmerge_adapter()`` clears PEFT's merged state and the
base weights are copied back from a snapshot taken once per model, since subtracting the delta is
not exact in floating point: the trainable model is bit-identical after every generation (tested).
The snapshot lives on the GPU when it fits with ``snapshot_placement``'s margin, else in pinned host
memory; the choice is logged once. Every generation merges the adapters as they are now, so the
rollout weights are always the current policy. Full fine-tuning has no adapters: generation runs on
the training weights in eval mode under ``no_grad``.

On-policy: a bf16 merge rounds the adapter deltas, so the merged model is not exactly the PEFT model
the loss trains (nor is any bf16 decode path). The engine therefore returns the sampling log-probs
(``SampledLogprobs``, the last logits processor, after the sampling warpers: ``recording_logprobs``)
and TRL's importance-sampling correction (``vllm_importance_sampling_correction``, switched on by
``trl_seam.GRPOSeam``) reweights the loss by exp(training - sampling log-probs), correcting the merge
rounding and the decode numerics alike. RMO-mutated completions carry NaN sampling log-probs (ratio
1). Log-probs for the loss are TRL's, on the unmerged PEFT model in train mode. Tests:
tests/trainer/test_rollout_onpolicy.py.

On CUDA (only) the call also uses a static KV cache sized to a bucketed worst case (``max_cache_len``:
``grpo.maxPromptLength`` when set, else the prompt length rounded up to ``CACHE_BUCKET``, + max
completion length) and transformers' auto-compiled decode step (cached on the model object, so
compiled once per run across stages). If that path raises, the engine warns once and keeps going
with merged weights + dynamic cache. ``bound_compile_threads`` caps inductor's compile workers per
rank before the first compile; the compile caches are never set here.

Evaluation (``evaluation.generate_answers``) uses the same merge (dynamic cache) and prompt
truncation. Sampling parameters are TRL's own generation config.

The measured figures behind these choices (merge rounding, log-prob differences, snapshot memory)
and what has not run on a GPU: bench/RESULTS.md, "Figures moved from trainer module docstrings".
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
import os
import sys
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import CompileConfig

from rarl_trainer.trl_seam import appending_logits_processor

log = logging.getLogger(__name__)

ENGINES = ("auto", "trl", "merged", "vllm")
CACHE_BUCKET = 256

# Snapshots of the frozen base weights of adapted layers, one per model object (shared by the
# trainers of successive stages, which train the same model).
_SNAPSHOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class RolloutEngineError(Exception):
    """The requested rollout engine cannot run here (a configuration error: exit code 2)."""


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_engine(name: str, *, cuda: bool | None = None, vllm: bool | None = None, sharded: bool = False) -> str:
    """``auto`` -> ``merged`` (``trl`` for a sharded model); ``vllm`` is checked (importable, CUDA) and refused clearly.

    ``sharded`` (``model.sharding: fsdp``): the merged engine needs every weight whole at once; TRL's
    generate on the FSDP model gathers one layer at a time (``sharding``).
    """
    if name not in ENGINES:
        raise RolloutEngineError(f"grpo.rolloutEngine: unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    if name == "auto":
        return "trl" if sharded else "merged"
    if sharded and name != "trl":
        raise RolloutEngineError(f"grpo.rolloutEngine {name!r} cannot run on a sharded model (model.sharding: fsdp); "
                                 "use 'auto' or 'trl'")
    if name == "vllm":
        if vllm is None:
            vllm = vllm_available()
        if not vllm:
            raise RolloutEngineError(
                "grpo.rolloutEngine is 'vllm' but vLLM is not installed in the trainer image; install vllm "
                "(matching the image's torch) or use rolloutEngine 'auto'/'merged'"
            )
        if cuda is None:
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
    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def any_merged(model) -> bool:
    """Whether any adapter layer is merged right now (must be False outside generation)."""
    if not is_peft_model(model):
        return False
    return any(getattr(m, "merged", False) for m in tuner_layers(model))


@dataclass
class _Snapshot:
    params: list  # the live parameters (base weights and biases of adapted layers)
    copies: list  # their frozen values (on the GPU, or in pinned host memory: ``snapshot_placement``)
    nbytes: int
    device: str = "cpu"  # where the copies live: "cpu" (CPU model), "cuda" or "pinned"


# Free GPU memory that must remain after a GPU-resident snapshot: training (activations, the backward pass,
# optimizer states) runs after the first generation, where the snapshot is taken, so its peak is not in the
# free figure yet. A fraction of the GPU and a floor, whichever is larger.
SNAPSHOT_MARGIN_FRACTION = 0.3
SNAPSHOT_MARGIN_MIN_BYTES = 4 << 30


def snapshot_placement(snapshot_bytes: int, free_bytes: int, total_bytes: int, *,
                       margin_fraction: float = SNAPSHOT_MARGIN_FRACTION,
                       margin_min_bytes: int = SNAPSHOT_MARGIN_MIN_BYTES) -> str:
    """``"cuda"`` when the snapshot fits in free GPU memory with the margin left over, else ``"pinned"``.

    ``free_bytes``/``total_bytes`` are ``torch.cuda.mem_get_info()`` of the weights' device. On the GPU the
    restore after each generation is a device-to-device copy and the host holds nothing; pinned host memory
    costs no GPU memory but one host-to-device copy per step and ~the snapshot size of host RAM per rank.
    """
    margin = max(int(margin_fraction * total_bytes), int(margin_min_bytes))
    return "cuda" if snapshot_bytes + margin <= free_bytes else "pinned"


def _snapshot_tensors(model) -> list:
    params, seen = [], set()
    for layer in tuner_layers(model):
        base = layer.get_base_layer()
        for p in (getattr(base, "weight", None), getattr(base, "bias", None)):
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            params.append(p)
    return params


def _take_snapshot(model) -> _Snapshot:
    params = _snapshot_tensors(model)
    nbytes = sum(p.numel() * p.element_size() for p in params)
    cuda = [p for p in params if p.is_cuda]
    device = "cpu"
    if cuda:
        free, total = torch.cuda.mem_get_info(cuda[0].device)
        device = snapshot_placement(sum(p.numel() * p.element_size() for p in cuda), free, total)
        log.warning(f"rarl: rollout engine: snapshot of the adapted base weights ({nbytes / 2**30:.2f} GiB) kept "
                    f"{'on the GPU' if device == 'cuda' else 'in pinned host memory'} (GPU free {free / 2**30:.1f} of "
                    f"{total / 2**30:.1f} GiB)")
    copies = []
    for p in params:
        t = p.detach()
        if t.is_cuda and device == "pinned":
            c = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=True)
            c.copy_(t)
        else:
            c = t.clone()
        copies.append(c)
    return _Snapshot(params, copies, nbytes, device)


def _snapshot(model) -> _Snapshot:
    snap = _SNAPSHOTS.get(model)
    if snap is None or any(p.requires_grad for p in snap.params):
        # A base weight that trains (unusual with LoRA) makes the snapshot stale: retake it each time.
        snap = _take_snapshot(model)
        _SNAPSHOTS[model] = snap
    return snap


# ------------------------------------------------------------------------- inductor compile workers

COMPILE_THREADS_CAP = 8


def compile_threads(cpu_count: int, local_world_size: int, cap: int = COMPILE_THREADS_CAP) -> int:
    """Inductor compile workers per rank: the node's CPUs shared by its ranks, at least 1, at most ``cap``.

    Inductor's own default is ``min(32, cpu_count)`` per process, so 8 ranks on a node start up to 256.
    """
    return max(1, min(int(cap), int(cpu_count) // max(1, int(local_world_size))))


def bound_compile_threads(environ=None, cpu_count: int | None = None, local_world_size: int | None = None):
    """Set ``TORCHINDUCTOR_COMPILE_THREADS`` (only if unset) before ``torch.compile`` is first used.

    Returns the value set, or None when the user's own setting was kept. Only the worker count is set:
    the compile caches (``TORCHINDUCTOR_CACHE_DIR``, ``TRITON_CACHE_DIR``, which the operator points at a cache
    volume when the job asks for one) are never touched here.
    """
    env = os.environ if environ is None else environ
    if "TORCHINDUCTOR_COMPILE_THREADS" in env:
        return None
    if cpu_count is None:
        try:
            cpu_count = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cpu_count = os.cpu_count() or 1
    if local_world_size is None:
        local_world_size = int(env.get("LOCAL_WORLD_SIZE", "1") or 1)
    n = compile_threads(cpu_count, local_world_size)
    env["TORCHINDUCTOR_COMPILE_THREADS"] = str(n)
    if environ is None and "torch._inductor.config" in sys.modules:
        # inductor read the variable at import: set its config too (still before the first compile)
        sys.modules["torch._inductor.config"].compile_threads = n
    return n


# ------------------------------------------------------------------------- sampling log-probs


class SampledLogprobs:
    """The log-probs of the sampled tokens under the distribution they were drawn from.

    Appended as the *last* logits processor of one ``generate`` call (after temperature, top-k/top-p and
    ``suppress_tokens``), so it sees the scores ``generate`` samples from: it keeps the log-softmax of a step's
    scores and reads the sampled token's entry one step later (the token is then the last input id); the last
    step is read in ``per_completion``. Memory: one (batch, vocab) fp32 tensor, not the whole score history
    that ``output_scores`` would keep.
    """

    def __init__(self):
        self.steps: list = []
        self._prev = None

    def __call__(self, input_ids, scores):
        if self._prev is not None:
            self.steps.append(self._prev.gather(-1, input_ids[:, -1:].to(self._prev.device)).squeeze(-1))
        self._prev = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def per_completion(self, completion_ids: list[list[int]]) -> list[list[float]]:
        """Per-row log-probs of the generated tokens, rows and tokens as TRL returns them (cut after EOS)."""
        table = torch.stack(self.steps, dim=1).cpu() if self.steps else torch.zeros((len(completion_ids), 0))
        last = self._prev
        out = []
        for i, ids in enumerate(completion_ids):
            n = len(ids)
            if n <= table.shape[1]:
                out.append(table[i, :n].tolist())
            elif n == table.shape[1] + 1 and last is not None:
                out.append([*table[i].tolist(), float(last[i, int(ids[-1])])])
            else:
                raise RuntimeError(f"sampling log-probs: {table.shape[1] + 1} steps recorded, a completion has {n}")
        return out


@contextmanager
def recording_logprobs(model) -> Iterator[dict]:
    """Every ``generate`` call on ``model`` inside gets a ``SampledLogprobs`` last in its logits processors.

    Yields a dict whose ``recorder`` is the last call's ``SampledLogprobs`` (None until ``generate`` runs).
    TRL's ``generate`` call takes no logits processor from us, and a ``logits_processor=`` argument would run
    *before* the sampling warpers, so the processor is appended through ``trl_seam.appending_logits_processor``.
    """
    with appending_logits_processor(model, SampledLogprobs) as state:
        yield state


@functools.cache
def _compile_config():
    """One object for the whole run: transformers recompiles when the config object differs."""
    return CompileConfig(fullgraph=False, dynamic=False, mode="reduce-overhead")


class RolloutEngine:
    """Merged-weights generation around TRL's own ``generate`` call (see the module docstring).

    ``static_cache`` and ``compile`` default to ``torch.cuda.is_available()``; they are only ever
    enabled on CUDA (transformers does not auto-compile on CPU anyway).
    """

    def __init__(self, model, *, static_cache: bool | None = None, compile: bool | None = None,
                 max_prompt_length: int | None = None):
        self.model = model
        self.max_prompt_length = max_prompt_length
        cuda = torch.cuda.is_available()
        self.static_cache = cuda if static_cache is None else (bool(static_cache) and cuda)
        self.compile = self.static_cache if compile is None else (bool(compile) and self.static_cache)
        self.merge = is_peft_model(model)
        if self.compile:
            bound_compile_threads()
        self.calls = 0
        self.fallback_reason: str | None = None
        self.stats = {"merge_s": 0.0, "restore_s": 0.0}

    @property
    def fast_path(self) -> bool:
        return self.static_cache

    def disable_fast_path(self, reason: str) -> None:
        if self.fallback_reason is None:
            log.warning(f"rarl: warning: static-cache/compiled rollouts failed ({reason}); continuing with merged weights "
                        "and a dynamic cache")
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
                        p.data.copy_(c, non_blocking=c.device != p.device)
                self.stats["restore_s"] += time.perf_counter() - t0
            self.calls += 1

    @contextmanager
    def generating(self, trainer, prompt_ids: list[list[int]], *, logprobs: bool = False) -> Iterator[dict | None]:
        """Around ``GRPOTrainer._generate_single_turn``: merged weights + this engine's generation config.

        ``logprobs``: yields ``recording_logprobs``' state, whose recorder holds the sampling log-probs of the
        call afterwards (``SampledLogprobs.per_completion``); else yields None.
        """
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
                if logprobs:
                    with recording_logprobs(self.model) as state:
                        yield state
                else:
                    yield None
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
