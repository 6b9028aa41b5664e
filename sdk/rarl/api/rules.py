"""The RARLJob's cross-field rules, and what a start does with a checkpoint of other training settings.

The schema (``rarl.api.types``) checks each field by itself; the rules here look at several fields or
sections together. Each model's validator calls its rule, so a spec that parses obeys them all; the
trainer calls ``modality_format_error`` and ``synthetic_target_error`` again for specs it builds itself.
A rule raises ``field_rule_error(field, message)`` to be reported at ``field`` below the model's path
(``rarl.api.validation``), or ValueError to be reported at the model.

``resume_decision`` is the one ``checkpoint.onSpecChange`` decision: the CLI (``rarl.resume``) says it
before a local start, the trainer (``CheckpointSession.check_settings``) carries it out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic_core import PydanticCustomError

from rarl.api.catalogue import is_text_builtin_model
from rarl.api.settings import changed_settings, config_hash, describe_changes, spec_change_refusal, training_settings

if TYPE_CHECKING:
    from rarl.api.types import (
        DatasetSpec,
        GRPOSpec,
        ModelSpec,
        RARLJobSpec,
        ResourcesSpec,
        RewardWeights,
        TargetSpec,
        VisionSpec,
    )

# Readers that can produce text items (the others read images only).
TEXT_FORMATS = frozenset({"jsonl", "synthetic"})


def field_rule_error(field: str, message: str) -> PydanticCustomError:
    """A cross-field rule's error, reported (by ``rarl.api.validation``) at ``field`` below the model's path."""
    return PydanticCustomError("field_rule", message.replace("{", "{{").replace("}", "}}"), {"field": field})


def modality_format_error(format: str, modality: str) -> str | None:
    """The trainer's reader rule: text items come only from jsonl manifests or the synthetic generator."""
    if modality == "text" and format not in TEXT_FORMATS:
        return (f"modality 'text' needs format 'jsonl' or 'synthetic': format {format!r} has image items only; "
                "use modality 'image'")
    return None


def synthetic_target_error(lo: float, hi: float) -> str | None:
    """The synthetic generator counts shapes: the target range must hold an integer."""
    if math.floor(hi) < math.ceil(lo):
        return f"format 'synthetic' needs an integer in target [{lo}, {hi}] (it counts shapes)"
    return None


# --------------------------------------------------------------------------- one section's fields together


def check_vision(vision: VisionSpec) -> None:
    if vision.min_pixels is not None and vision.max_pixels is not None and vision.min_pixels > vision.max_pixels:
        raise field_rule_error("minPixels", f"minPixels ({vision.min_pixels}) is above maxPixels ({vision.max_pixels})")


def check_model(model: ModelSpec) -> None:
    if model.cpu_offload and model.sharding != "fsdp":
        raise field_rule_error("cpuOffload", "cpuOffload offloads FSDP shards: it needs sharding 'fsdp'")


def check_target(target: TargetSpec) -> None:
    if target.max <= target.min:
        raise ValueError(f"max ({target.max}) must be greater than min ({target.min})")
    if target.levels is not None:
        if len(target.levels) < 2:
            raise ValueError("levels needs at least 2 words (one per band of the scale), or leave it out")
        if any(not w.strip() for w in target.levels) or len(set(target.levels)) != len(target.levels):
            raise ValueError("levels must be distinct, non-empty words")


def check_dataset(dataset: DatasetSpec) -> None:
    if dataset.format != "synthetic" and not dataset.train:
        raise ValueError(f"train is required for format {dataset.format!r}")
    builtin = dataset.builtin()
    if builtin is not None:
        if dataset.format != "jsonl":
            raise ValueError(f"train {dataset.train!r} is a builtin data set: use format 'jsonl'")
        if dataset.modality != builtin.modality:
            raise ValueError(f"train {dataset.train!r} has {builtin.modality} items: use modality {builtin.modality!r}")
    if dataset.format == "coco-rem" and not dataset.category:
        raise ValueError("category is required for format 'coco-rem' (the COCO category to count)")
    if dataset.target is None:
        raise ValueError("target (min, max, unit, precision) is required for format 'jsonl'")
    error = modality_format_error(dataset.format, dataset.modality)
    if error is not None:
        raise field_rule_error("modality", error)
    if dataset.format == "synthetic":
        error = synthetic_target_error(dataset.target.min, dataset.target.max)
        if error is not None:
            raise field_rule_error("target", error)


def check_reward_weights(weights: RewardWeights) -> None:
    if weights.regression == 0 and weights.ranking == 0 and weights.format == 0:
        raise ValueError("every weight is 0: the reward would always be 0 and GRPO would learn nothing; "
                         "give at least one term a weight > 0")


def check_grpo(grpo: GRPOSpec) -> None:
    if grpo.epsilon_high is not None and grpo.epsilon_high < grpo.epsilon:
        raise field_rule_error(
            "epsilonHigh", f"must be at least epsilon ({grpo.epsilon}); got {grpo.epsilon_high}"
        )


def check_resources(resources: ResourcesSpec) -> None:
    # Kubernetes cannot overcommit extended resources: a request must equal its limit. The manifest copies
    # one set on one side only to the other; two different values are an error here, not at pod creation.
    requests, limits = resources.requests.extra, resources.limits.extra
    for name in sorted(set(requests) & set(limits)):
        if requests[name] != limits[name]:
            raise field_rule_error(f"limits.extra.{name}", (
                f"{name}: requests ({requests[name]}) and limits ({limits[name]}) differ; "
                "an extended resource's request must equal its limit (set it on one side only)"))


# --------------------------------------------------------------------------- sections together


def check_spec(spec: RARLJobSpec) -> None:
    seen: set[str] = set()
    for index, stage in enumerate(spec.stages):
        if stage.name in seen:
            # validation.py reports this at spec.stages[index].name (ctx carries the index)
            raise PydanticCustomError(
                "duplicate_stage_name",
                "duplicate stage name '{name}': stage names must be unique",
                {"name": stage.name, "index": index},
            )
        seen.add(stage.name)
    if is_text_builtin_model(spec.model.base) and spec.dataset.modality == "image":
        raise field_rule_error("dataset.modality", (
            f"dataset.modality is 'image' but model.base {spec.model.base!r} is a text model; "
            "use a vision-language model (builtin:tiny-qwen2.5-vl) or dataset.modality 'text'"
        ))
    # (the defaults pass: a spec dumped with its defaults, as the trainer's config is, must validate again)
    if spec.dataset.modality == "text" and spec.model.vision != type(spec.model.vision)():
        raise field_rule_error("model.vision", "model.vision sets image sizes, but dataset.modality is 'text' "
                               "(no images reach the model); remove model.vision")
    if spec.model.sharding == "fsdp" and spec.resources.processes() == 1:
        raise field_rule_error("model.sharding", (
            "model.sharding 'fsdp' shards the model over the job's processes, but resources give it one "
            "(nodes x gpusPerNode): nothing to shard over; use sharding 'none', or more GPUs or nodes"
        ))
    if spec.model.sharding == "fsdp" and spec.grpo.rollout_engine in ("merged", "vllm"):
        raise field_rule_error("grpo.rolloutEngine", (
            f"grpo.rolloutEngine {spec.grpo.rollout_engine!r} needs every weight whole on every process, but "
            "model.sharding is 'fsdp' (each process holds a shard); use rolloutEngine 'auto' or 'trl' (TRL's "
            "generate on the sharded model, one layer gathered at a time)"
        ))
    out, ckpt = spec.output.uri.rstrip("/"), spec.checkpoint.uri.rstrip("/")
    if out == ckpt or out.startswith(ckpt + "/"):
        raise field_rule_error("output.uri", (
            f"output.uri {spec.output.uri!r} is {'' if out == ckpt else 'inside '}checkpoint.uri {ckpt!r}: the "
            "checkpoints' retention and the export would write in one folder; give the model its own location"
        ))
    for i, stage in enumerate(spec.stages):
        if stage.kind != "grpo":
            continue
        if stage.rmo.enabled and stage.rmo.mutations > spec.grpo.num_generations:
            raise field_rule_error(f"stages[{i}].rmo.mutations", (
                f"rmo.mutations {stage.rmo.mutations} is more than the {spec.grpo.num_generations} completions "
                "of a group (grpo.numGenerations): RMO replaces completions within a group"
            ))
        try:  # the trainer's rule, caught at submit
            spec.grpo.completions_per_step(spec.resources.processes(), stage)
        except ValueError as exc:
            field = (f"stages[{i}].gradientAccumulationSteps" if stage.gradient_accumulation_steps is not None
                     else "grpo.perDeviceBatchSize")
            raise field_rule_error(field, str(exc)) from None


# --------------------------------------------------------------------------- checkpoint.onSpecChange


@dataclass(frozen=True)
class ResumeDecision:
    """What a start does with the newest checkpoint at ``checkpoint.uri``.

    resume: continue from it (its training settings are the job's, or ``onSpecChange: resume``);
    restart: delete the checkpoints and train from step 0 (``onSpecChange: restart``);
    refuse: the start fails with ``message`` (``onSpecChange: fail``, the default).
    """

    action: Literal["resume", "restart", "refuse"]
    where: str  # "checkpoint step <n> at <checkpoint.uri>"
    changes: tuple[str, ...] | None = None  # None: the same training settings; (): changed, not recorded which
    message: str | None = None  # the refusal, for action "refuse"

    @property
    def changed(self) -> bool:
        """The checkpoint was written under other training settings."""
        return self.changes is not None

    @property
    def what(self) -> str:
        """The changes in one line (``describe_changes``); empty when nothing changed."""
        return describe_changes(list(self.changes)) if self.changes is not None else ""


def resume_decision(spec: RARLJobSpec, step: int, recorded_hash: str | None,
                    recorded_settings: Mapping[str, Any] | None) -> ResumeDecision:
    """The ``checkpoint.onSpecChange`` decision for the checkpoint of ``step`` at ``spec.checkpoint.uri``.

    ``recorded_hash`` is the ``config_hash`` the checkpoint was written under (None: not recorded, taken as
    the same settings), ``recorded_settings`` its ``training_settings(by_alias=True)`` (None or empty: it
    predates that record, so what changed cannot be named). Pure: deleting the checkpoints on a restart,
    and what is printed, are the caller's.
    """
    where = f"checkpoint step {step} at {spec.checkpoint.uri}"
    if recorded_hash is None or recorded_hash == config_hash(spec):
        return ResumeDecision("resume", where)
    changes = (tuple(changed_settings(recorded_settings, training_settings(spec, by_alias=True)))
               if recorded_settings else ())
    policy = spec.checkpoint.on_spec_change
    if policy == "resume":
        return ResumeDecision("resume", where, changes)
    if policy == "restart":
        return ResumeDecision("restart", where, changes)
    return ResumeDecision("refuse", where, changes, spec_change_refusal(where, describe_changes(list(changes))))
