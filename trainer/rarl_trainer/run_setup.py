"""A run's start: what the machine must offer (refused before anything loads), then the data and the model.

Each loader returns what it loaded; every rank loads at once and agrees on errors (``RunContext.on_every_rank``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rarl.api.uri import builtin_name
from rarl_trainer.config import ConfigError
from rarl_trainer.data import DataError, load_items
from rarl_trainer.models import LoadedModel, ModelLoadError, load_model, resolve_model_path
from rarl_trainer.prompts import balanced_strata
from rarl_trainer.rollout import RolloutEngineError, resolve_engine
from rarl_trainer.run_context import RunContext
from rarl_trainer.sharding import mark_fsdp_managed, sharded


def check_rollout_engine(spec) -> str:
    """grpo.rolloutEngine resolved (auto -> merged); a vLLM engine that cannot run here is a ConfigError."""
    if not any(s.kind == "grpo" for s in spec.stages):
        return "trl"
    try:
        return resolve_engine(spec.grpo.rollout_engine, sharded=sharded(spec))
    except RolloutEngineError as e:
        raise ConfigError(str(e)) from None


def check_sharding(ctx: RunContext) -> None:
    """What ``model.sharding``/``cpuOffload`` need of the machine, refused before anything loads."""
    if sharded(ctx.spec) and not ctx.dist.distributed:
        raise ConfigError("model.sharding is 'fsdp' but this run has one process (gpusPerNode GPUs were not all "
                          "there, or a CPU run): there is nothing to shard over; use sharding 'none'")
    if ctx.spec.model.cpu_offload and not torch.cuda.is_available():
        raise ConfigError("model.cpuOffload moves the FSDP shards from the GPUs to host memory, but this run has "
                          "no GPU (its shards are in host memory already): remove model.cpuOffload")


@dataclass(frozen=True)
class RunData:
    """The job's dataset items: the training split and the evaluation split."""

    train_items: list
    eval_items: list
    strata: list[int] | None  # each training item's stratum (dataset.sampling balanced[-per-step]), or None


def train_strata(spec, train_items: list) -> list[int] | None:
    """Each training item's stratum under ``dataset.sampling: balanced[-per-step]`` (None: uniform sampling)."""
    if spec.dataset.sampling == "uniform":
        return None
    return balanced_strata(train_items, spec.dataset.target)


def load_data(ctx: RunContext) -> RunData:
    spec = ctx.spec

    def load() -> tuple[list, list]:
        try:
            return (load_items(spec.dataset, "train", storage=spec.storage).items,
                    load_items(spec.dataset, "eval", storage=spec.storage).items)
        except DataError as e:
            raise ConfigError(f"dataset: {e}") from None

    train_items, eval_items = ctx.on_every_rank(load)
    return RunData(train_items, eval_items, train_strata(spec, train_items))


def load_run_model(ctx: RunContext) -> LoadedModel:
    """The model to train, on this rank's device (marked FSDP-managed when sharded), checked against the data."""
    spec = ctx.spec
    device = ctx.device()

    def build_builtin() -> None:
        # builtin:<name> is built on rank 0 first, the others waiting in on_every_rank's collective, so a
        # shared cache is built once (these builders run locally in seconds and download nothing). A
        # node with its own cache builds it again in load(): builtin_models builds in a child process
        # while a process group is up, since transformers then saves weights on global rank 0 only.
        if ctx.dist.is_main:
            try:
                resolve_model_path(spec.model.base, spec.storage)
            except ModelLoadError as e:
                raise ConfigError(f"model: {e}") from None

    def load() -> LoadedModel:
        try:
            return load_model(spec.model, spec.storage, device=device, seed=spec.grpo.seed)
        except ModelLoadError as e:
            raise ConfigError(f"model: {e}") from None

    if builtin_name(spec.model.base) is not None:
        ctx.on_every_rank(build_builtin)
    loaded = ctx.on_every_rank(load)
    if sharded(spec):
        mark_fsdp_managed(loaded.model)  # every generate, evaluations included, steps all ranks together
    if spec.dataset.modality == "image" and not loaded.is_vlm:
        raise ConfigError(
            f"model: {spec.model.base} is a text model but dataset.modality is 'image'; "
            "use a vision-language model or a text dataset"
        )
    return loaded
