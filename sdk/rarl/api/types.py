"""The RARLJob API: the single source of truth.

These pydantic models generate the CRD's OpenAPI schema (``rarl.api.crd``),
validate YAML in ``rarlctl``, type the SDK and configure the trainer.
camelCase in YAML, snake_case in Python. Every field carries its own help.
Each model lists its fields, then its validators, then its helpers; the rules that look
at several fields or sections are in ``rarl.api.rules``, what ``builtin:<name>`` names in
``rarl.api.catalogue``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from rarl.api import rules
from rarl.api.catalogue import BuiltinDataset, builtin_dataset, builtin_dataset_error, builtin_model_error
from rarl.api.uri import builtin_name, has_scheme, has_userinfo, parse_uri, redact_uri
from rarl.api.vocabulary import Phase

API_GROUP = "rarl.dev"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
KIND = "RARLJob"
PLURAL = "rarljobs"
SINGULAR = "rarljob"
SHORT_NAMES = ["rj"]
CATEGORIES = ["rarl"]

DatasetFormat = Literal["utkface", "ava", "coco-rem", "jsonl", "synthetic"]

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")  # Kubernetes label/annotation key name
MAX_TOKENS = 131072
"""Upper bound of a prompt or completion length: 128k tokens, beyond the context of the models RARL trains."""
INSTRUCTION_PLACEHOLDERS = ("items", "n", "unit", "min", "max", "what", "format")
"""The names ``dataset.instruction`` may use in braces (the trainer fills them in, prompts.py)."""
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 40
_QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[KMGTPE]i?|[munkMGTPE])?$")


class APIModel(BaseModel):
    """Base of every API object: camelCase aliases, unknown fields rejected, no inf or NaN in a number; an
    error never quotes the input (it may be a URI with credentials): our messages quote what they need."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
        allow_inf_nan=False,
        hide_input_in_errors=True,
    )


# --------------------------------------------------------------------------- helpers


def _quantity(value: Any) -> Any:
    """Accept Kubernetes quantities written as numbers (``cpu: 2``) or strings (``memory: 8Gi``)."""
    if isinstance(value, bool):
        raise ValueError("must be a Kubernetes quantity such as 2, 500m or 8Gi, not a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        value = str(value)
    if isinstance(value, str) and not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 2, 500m, 8Gi, 1.5)")
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


def check_uri(value: str) -> str:
    """A storage location: ``s3://bucket[/prefix]``, ``file:///abs/path`` or a plain path (see ``rarl.api.uri``)."""
    parse_uri(value)  # InvalidURI is a ValueError: pydantic reports it on the field
    return value


StorageURI = Annotated[str, BeforeValidator(lambda v: check_uri(v) if isinstance(v, str) else v)]


def _eval_queries(value: Any) -> int | str:
    if value == "all":
        return "all"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a whole number >= 1 or 'all', got {value!r}")
    return value


EvalQueries = Annotated[
    int | str,
    PlainValidator(_eval_queries),
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]
"""``grpo.evalQueries``: a count per list size, or ``all`` (the whole held-out split)."""


# --------------------------------------------------------------------------- model


class LoRASpec(APIModel):
    """LoRA adapters through PEFT."""

    enabled: bool = Field(True, description="Train LoRA adapters (true) or fine-tune all weights (false).")
    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (lora_alpha).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description=(
            "Module names (or suffixes) that get adapters; ['all-linear'] targets every linear layer of the "
            "language model except the output head."
        ),
    )


# Qwen2-VL's model card suggests max_pixels = 1280 * 28 * 28 (at most 1280 visual tokens an image);
# its processor's own default is 12845056 (16384 * 28 * 28).
DEFAULT_MAX_PIXELS = 1280 * 28 * 28


class VisionSpec(APIModel):
    """How images reach a vision-language model: the processor's pixel budget per image."""

    min_pixels: int | None = Field(
        None, ge=1, description="Smallest image area in pixels (processor min_pixels); default: the processor's own."
    )
    max_pixels: int | None = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        description=(
            "Largest image area in pixels (processor max_pixels): larger images are scaled down to fit, which "
            "bounds the image tokens of every prompt. Default 1003520 (1280 x 28 x 28, Qwen2-VL's suggestion: "
            "at most 1280 visual tokens an image); null: the processor's own (12845056 for Qwen2.5-VL)."
        ),
    )

    @model_validator(mode="after")
    def _min_below_max(self) -> VisionSpec:
        rules.check_vision(self)
        return self


class ModelSpec(APIModel):
    """The base model and how it is trained."""

    base: str = Field(
        ...,
        min_length=1,
        description=(
            "Base model: a Hugging Face hub id (Qwen/Qwen2.5-VL-3B-Instruct), a local folder, an s3:// URI, or "
            "builtin:<name> for a model rarl builds offline (tiny-qwen2.5-vl, tiny-lm, smollm2-135m-instruct)."
        ),
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype; auto picks bfloat16 on GPUs that support it and float32 on CPU."
    )
    lora: LoRASpec = Field(default_factory=LoRASpec, description="LoRA settings; lora.enabled=false fine-tunes all weights.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory with gradient checkpointing.")
    trust_remote_code: bool = Field(False, description="Allow custom modelling code from the model folder or hub.")
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        "auto", description="Attention kernel; auto lets transformers choose."
    )
    vision: VisionSpec = Field(
        default_factory=VisionSpec,
        description="Image settings of vision-language models (jobs with dataset.modality text leave it unset).",
    )
    sharding: Literal["none", "fsdp"] = Field(
        "none",
        description=(
            "How the trained model is spread over the job's processes. none: every process holds the whole model "
            "(DDP; right for LoRA and for full fine-tuning that fits one GPU). fsdp: FSDP2, every process holds "
            "1/N of each weight, gradient and optimizer state (fully_shard per decoder layer and vision block), "
            "gathering one layer at a time for its forward and backward; for full fine-tuning of models whose "
            "weights + gradients + AdamW state (16 bytes a parameter) do not fit one GPU."
        ),
    )
    cpu_offload: bool = Field(
        False,
        description=(
            "With sharding fsdp, on GPUs: keep the sharded weights, gradients and optimizer state in host memory "
            "and copy each layer to the GPU for its compute (FSDP2's CPUOffloadPolicy): less GPU memory, slower "
            "steps. A run without GPUs refuses it."
        ),
    )

    @field_validator("base")
    @classmethod
    def _base_location(cls, v: str) -> str:
        name = builtin_name(v)
        if name is not None:
            if error := builtin_model_error(name):
                raise ValueError(error)
        elif has_scheme(v):
            check_uri(v)
        return v  # a path or a hub id

    @model_validator(mode="after")
    def _offload_needs_fsdp(self) -> ModelSpec:
        rules.check_model(self)
        return self


# --------------------------------------------------------------------------- dataset


class TargetSpec(APIModel):
    """The ordinal quantity the model predicts."""

    min: float = Field(..., description="Smallest valid target value (answers are clipped to [min, max]).")
    max: float = Field(..., description="Largest valid target value.")
    unit: str = Field("", description="Unit named in the prompt, e.g. 'years', 'objects', 'points'.")
    precision: float = Field(
        1.0, gt=0, description="Rounding step of targets and mutated answers (1 for ages and counts, 0.1 for scores)."
    )
    levels: list[str] | None = Field(
        None,
        description=(
            "Words for equal bands of the scale, lowest first (e.g. [very negative, negative, positive, very "
            "positive]). An sft stage's reference reasoning then names each item's band before its value "
            "('Item 1 is negative.'), so the model says what it knows about the item before the number. "
            "Default: the words the instruction gives the ends of the scale: '{min} (very negative) to {max} (very "
            "positive)' gives two bands, very negative and very positive; without such words, one fixed sentence."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> TargetSpec:
        rules.check_target(self)
        return self


# Defaults a user would want for each known dataset format.
TARGET_DEFAULTS: dict[str, dict[str, Any]] = {
    "utkface": {"min": 1, "max": 116, "unit": "years", "precision": 1},
    "ava": {"min": 1, "max": 10, "unit": "points", "precision": 0.01},
    "coco-rem": {"min": 0, "max": 50, "unit": "objects", "precision": 1},
    "synthetic": {"min": 1, "max": 9, "unit": "shapes", "precision": 1},
}


class SyntheticSpec(APIModel):
    """The built-in synthetic counting task (tests and the quickstart)."""

    train_size: int = Field(512, ge=1, le=1_000_000, description="Number of generated training items.")
    eval_size: int = Field(64, ge=1, le=1_000_000, description="Number of generated evaluation items.")
    seed: int = Field(0, ge=0, description="Seed of the generator; the same seed gives the same items.")
    image_size: int = Field(64, ge=16, le=2048, description="Side of the square canvas in pixels (image items).")


class DatasetSpec(APIModel):
    """Where the items come from and what they measure."""

    format: DatasetFormat = Field(
        ..., description="Reader: utkface, ava, coco-rem, jsonl (a manifest of items) or synthetic (generated)."
    )
    train: str | None = Field(
        None,
        description=(
            "Training data location (folder, file, file:// or s3:// URI): a UTKFace folder, a folder with AVA.txt and "
            "images/, a COCO instances JSON beside its images, or a JSONL manifest; or builtin:<name> (format jsonl), "
            "a human-rated data set that a package ships: builtin:afinn-en-165 (word valence -5..5; pip install "
            "afinn). Not used by synthetic."
        ),
    )
    eval: str | None = Field(
        None, description="Evaluation data location in the same format; default: a held-out part of train."
    )
    images: str | None = Field(
        None, description="Image folder when it is not beside the annotations (AVA, COCO-ReM)."
    )
    eval_fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of train held out for evaluation when eval is not given."
    )
    modality: Literal["image", "text"] = Field("image", description="Items are images (VLMs) or text (text LMs).")
    # Never None once validated: ``_default_target`` fills the builtin data set's or the format's defaults.
    target: TargetSpec = Field(
        None,
        description="Range, unit and precision of the targets; defaults depend on the format.",
        json_schema_extra=lambda schema: schema.update(anyOf=[{"$ref": schema.pop("$ref")}, {"type": "null"}]),
    )
    category: str | None = Field(None, description="COCO-ReM: the category to count, e.g. 'person'.")
    include_zero: bool = Field(True, description="COCO-ReM: keep images with no instance of the category.")
    skip_bad_items: bool = Field(
        False, description="Skip (and count) missing or corrupt items instead of failing on the first one."
    )
    max_items: int | None = Field(None, ge=1, description="Use at most this many training items (after shuffling).")
    sampling: Literal["uniform", "balanced", "balanced-per-step"] = Field(
        "uniform",
        description=(
            "How training queries draw their items: uniform over the items, or balanced: a level first (the bands "
            "of target.levels, else each distinct target value), equally often, then an item of it; rare levels are "
            "then seen more often than they occur. balanced-per-step: the levels are dealt like shuffled decks, one "
            "level per item drawn and every level once per deck, so each step's items spread over the whole scale "
            "instead of only on average over the run (a small GRPO batch that happens to lean to one end moves "
            "every answer that way: bench_drift.py). Evaluation always uses the held-out items as they are."
        ),
    )
    instruction: str | None = Field(
        None,
        description=(
            "Prompt template. Placeholders: {items} (e.g. 'the image' or 'each of the 4 words'), {n} (how many), "
            "{unit}, {min}, {max}, {what} (the quantity) and {format} (the answer format); another {name} is refused "
            "(other braces, e.g. JSON, are kept as written). Default: a template per format."
        ),
    )
    synthetic: SyntheticSpec = Field(default_factory=SyntheticSpec, description="Settings of the synthetic generator.")

    @field_validator("instruction")
    @classmethod
    def _placeholders(cls, v: str | None) -> str | None:
        if v is None:
            return v
        names = re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", v)  # what the trainer replaces; other braces stay
        unknown = sorted({n for n in names if n not in INSTRUCTION_PLACEHOLDERS})
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}: the prompt would "
                             f"show them as typed; use {', '.join('{' + n + '}' for n in INSTRUCTION_PLACEHOLDERS)}")
        return v

    @field_validator("train", "eval", "images")
    @classmethod
    def _location(cls, v: str | None) -> str | None:
        name = None if v is None else builtin_name(v)
        if name is not None:
            if error := builtin_dataset_error(name):
                raise ValueError(error)
            return v
        return None if v is None else check_uri(v)

    @model_validator(mode="before")
    @classmethod
    def _default_target(cls, data: Any) -> Any:
        """Fill ``target`` from the builtin data set or the format before the fields are validated."""
        if not isinstance(data, dict) or data.get("target") is not None:
            return data
        fmt = data.get("format")
        builtin = builtin_dataset(data.get("train"))
        if builtin is not None:
            return {**data, "target": dict(builtin.target)}
        if isinstance(fmt, str) and fmt in TARGET_DEFAULTS:
            return {**data, "target": dict(TARGET_DEFAULTS[fmt])}
        return data  # jsonl without a target: _format_rules names the problem

    @model_validator(mode="after")
    def _format_rules(self) -> DatasetSpec:
        rules.check_dataset(self)
        return self

    def builtin(self) -> BuiltinDataset | None:
        """The builtin data set that ``train`` names, if it names one."""
        return builtin_dataset(self.train)


# --------------------------------------------------------------------------- reward, RMO, stages


class RewardWeights(APIModel):
    """Weights of the reward terms in the total."""

    regression: float = Field(1.0, ge=0, description="Weight of the regression (precision) reward.")
    ranking: float = Field(1.0, ge=0, description="Weight of the ranking reward (lists of n >= 2, or batch ranking).")
    format: float = Field(0.5, ge=0, description="Weight of the format reward.")

    @model_validator(mode="after")
    def _some_weight(self) -> RewardWeights:
        rules.check_reward_weights(self)
        return self


class RewardSpec(APIModel):
    """RARL's ranking-aware verifiable reward."""

    delta: float | None = Field(
        None,
        gt=0,
        description=(
            "Tolerance of the regression reward 1 - (v - y)^2 / delta^2 (0 beyond delta), in target units; "
            "default: a tenth of the target range."
        ),
    )
    weights: RewardWeights = Field(default_factory=RewardWeights, description="Weights of the reward terms.")
    ranking_alpha: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Ranking reward = alpha * (tau_b + 1) / 2 + (1 - alpha) * [predicted order is exact].",
    )
    batch_ranking: bool = Field(
        False,
        description="For single-item queries, add a pairwise fidelity ranking reward against the other queries of the batch.",
    )


class RMOSpec(APIModel):
    """Response Mutation Operations: revive gradients in groups whose rewards do not differ."""

    enabled: bool = Field(True, description="Apply RMO in this stage.")
    epsilon: float = Field(
        0.01, ge=0, description="A group whose reward spread (max - min) is below epsilon is always mutated."
    )
    probability: float = Field(0.0, ge=0, le=1, description="Probability of mutating any other group.")
    mutations: int = Field(1, ge=1, le=64, description="Completions replaced per mutated group (m).")
    sigma: float = Field(
        0.05, ge=0, description="Noise of mutated values: y + N(0, (sigma * range)^2), then clipped and rounded."
    )
    mode: Literal["auto", "value", "order"] = Field(
        "auto",
        description="value: noisy reference values; order: the true order with k adjacent swaps; auto: value for n = 1, either for n >= 2.",
    )
    swaps: int = Field(1, ge=0, le=64, description="Order mode: random adjacent swaps (k) applied to the true order.")


class StageSpec(APIModel):
    """One training stage; stages run in order, each starting from the previous one's weights."""

    name: str = Field(..., min_length=1, max_length=63, description="Stage name, unique in the job (shown in status).")
    kind: Literal["grpo", "sft"] = Field("grpo", description="grpo: RL with the RARL reward; sft: supervised on reference answers.")
    steps: int = Field(..., ge=1, le=10_000_000, description="Optimizer steps in this stage.")
    list_sizes: list[Annotated[int, Field(ge=1, le=16)]] = Field(
        default_factory=lambda: [1], description="Query list sizes n drawn uniformly per query (each in 1..16)."
    )
    rmo: RMOSpec = Field(default_factory=RMOSpec, description="Response Mutation Operations in this stage (grpo only).")
    learning_rate: float | None = Field(None, gt=0, description="Learning rate for this stage; default: grpo.learningRate.")
    gradient_accumulation_steps: int | None = Field(
        None, ge=1, description=(
            "Micro-batches accumulated per optimizer step in this stage; default: grpo.gradientAccumulationSteps. "
            "E.g. an sft stage of 8 queries a step, then a grpo stage of 64 completions (16 queries x G=4) a step."
        ),
    )
    reward_weights: RewardWeights | None = Field(
        None, description="Reward weights for this stage; default: reward.weights."
    )

    @field_validator("name")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not _DNS1123.match(v):
            raise ValueError(f"{v!r} must be lowercase letters, digits and '-' (starting and ending alphanumeric)")
        return v

    @model_validator(mode="after")
    def _needs_list_sizes(self) -> StageSpec:
        if not self.list_sizes:
            raise ValueError("listSizes must not be empty: name at least one list size (1..16)")
        return self


def default_stages() -> list[StageSpec]:
    """The paper-style two stages: a regression warm-up, then ranking-aware training on mixed list sizes."""
    return [
        StageSpec(name="regression-warmup", kind="grpo", steps=200, list_sizes=[1],
                  reward_weights=RewardWeights(regression=1.0, ranking=0.0, format=0.5)),
        StageSpec(name="ranking-aware", kind="grpo", steps=400, list_sizes=[1, 2, 4, 8]),
    ]


class GRPOSpec(APIModel):
    """GRPO settings shared by every grpo stage (the names follow TRL's GRPOConfig)."""

    num_generations: int = Field(8, ge=2, le=256, description="Completions sampled per query (the group size G).")
    per_device_batch_size: int = Field(
        8, ge=1, description=(
            "Completions per device per micro-batch (TRL's per_device_train_batch_size); "
            "the global batch (times accumulation) must be a multiple of numGenerations."
        ),
    )
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    learning_rate: float = Field(1e-5, gt=0, description="AdamW learning rate.")
    beta: float = Field(
        0.04, ge=0, description=(
            "KL penalty coefficient against the reference model (0 disables it). The reference is the policy as "
            "the stage starts: the previous stage's (e.g. the SFT cold start's), model.base for the first stage; "
            "with LoRA and with full fine-tuning (whose checkpoints then also carry the reference model's weights)."
        ),
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of rollouts.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold of rollouts.")
    max_prompt_length: int | None = Field(
        None,
        ge=1,
        le=MAX_TOKENS,
        description=(
            "Longest prompt in tokens for rollouts and evaluation: longer prompts lose their oldest text tokens "
            "(from the left; image tokens are always kept). Also fixes the rollout engine's KV-cache size, so "
            "compiled decoding compiles once. Unset: prompts are used whole."
        ),
    )
    max_completion_length: int = Field(256, ge=1, le=MAX_TOKENS, description="Maximum generated tokens per completion.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of a stage's steps with linear learning-rate warm-up.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(42, ge=0, description="Seed of sampling, data order and RMO.")
    eval_every_steps: int | None = Field(
        None, ge=1, description="Evaluate every N steps (and always at the end of each stage)."
    )
    eval_list_sizes: list[Annotated[int, Field(ge=1, le=16)]] = Field(
        default_factory=lambda: [1, 2, 4, 8], description="List sizes evaluated (each in 1..16)."
    )
    eval_queries: EvalQueries = Field(
        64, description=(
            "Evaluation queries per list size, drawn at random from the held-out items; all: the whole held-out "
            "split once per list size (every item alone, and dealt into lists of n with distinct targets), so "
            "recipes can be told apart on every held-out item."
        ),
    )
    logging_steps: int = Field(1, ge=1, description="Log metrics every N steps.")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description=(
            "How advantages are scaled (TRL's scale_rewards): group divides each group's centred rewards by the "
            "group's std (near-identical groups get inflated advantages, Dr. GRPO arXiv 2503.20783), batch by "
            "the std of the whole batch, none leaves them in reward units."
        ),
    )
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = Field(
        "dapo", description=(
            "How per-token losses are averaged (TRL's loss_type): grpo per sequence then per batch, bnpo and "
            "dapo over the batch's tokens (dapo over the whole accumulated step), dr_grpo over batch size x "
            "maxCompletionLength (no length bias)."
        ),
    )
    epsilon: float = Field(
        0.2, gt=0, lt=1, description="Lower clipping bound of the policy ratio (1 - epsilon; TRL's epsilon)."
    )
    epsilon_high: float | None = Field(
        None, gt=0, lt=10, description=(
            "Upper clipping bound of the policy ratio (1 + epsilonHigh; DAPO's clip-higher, e.g. 0.28); "
            "default: epsilon. At least epsilon."
        ),
    )
    num_iterations: int = Field(
        1, ge=1, le=64, description=(
            "Optimisation passes over each generated batch (TRL's num_iterations, mu in the GRPO paper): more "
            "updates per rollout, with the policy-ratio clip active from the second pass on."
        ),
    )
    rollout_engine: Literal["auto", "trl", "merged", "vllm"] = Field(
        "auto", description=(
            "How rollouts are generated. merged (auto's choice): TRL's generate on weights with the LoRA adapters "
            "merged in place for the call (restored exactly afterwards; full fine-tuning generates on the training "
            "weights in eval mode), with a static KV cache and a compiled decode step on GPUs. trl: TRL's own "
            "generate on the unmerged PEFT model. vllm: TRL's colocated vLLM engine (needs vLLM in the trainer "
            "image and a GPU; the trainer exits 2 otherwise)."
        ),
    )

    @model_validator(mode="after")
    def _clip_bounds(self) -> GRPOSpec:
        rules.check_grpo(self)
        return self

    def completions_per_step(self, world_size: int, stage: StageSpec | None = None) -> int:
        """Completions of one optimizer step (of ``stage``, when it sets its own accumulation); ValueError when it
        is not a whole number of groups."""
        accumulation = self.accumulation(stage)
        total = self.per_device_batch_size * accumulation * world_size
        if total % self.num_generations:
            where = f"stage {stage.name}'s " if stage is not None and stage.gradient_accumulation_steps else ""
            raise ValueError(
                f"grpo: perDeviceBatchSize ({self.per_device_batch_size}) x {where}gradientAccumulationSteps "
                f"({accumulation}) x processes ({world_size}) = {total} completions per step is "
                f"not a multiple of numGenerations ({self.num_generations})"
            )
        return total

    def accumulation(self, stage: StageSpec | None = None) -> int:
        """Micro-batches per optimizer step: the stage's own, else ``gradientAccumulationSteps``."""
        if stage is not None and stage.gradient_accumulation_steps is not None:
            return stage.gradient_accumulation_steps
        return self.gradient_accumulation_steps


# --------------------------------------------------------------------------- infrastructure


class Toleration(APIModel):
    """A Kubernetes toleration, passed through to trainer pods."""

    key: str | None = Field(None, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default Equal).")
    value: str | None = Field(None, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(None, description="For NoExecute: how long the pod stays bound.")


# Resource names the spec sets through their own fields (or that rarl sets itself), never through ``extra``.
MANAGED_RESOURCE_NAMES = frozenset({"cpu", "memory", "ephemeral-storage", "nvidia.com/gpu"})
_RESOURCE_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class ResourceList(APIModel):
    """Quantities per pod: CPU, memory, local disk and any extended resource (RDMA devices, hugepages)."""

    cpu: Quantity | None = Field(None, description="CPU quantity, e.g. 8 or 500m.")
    memory: Quantity | None = Field(None, description="Memory quantity, e.g. 64Gi.")
    ephemeral_storage: Quantity | None = Field(
        None, description="Local disk (ephemeral-storage); default request: resources.workspaceSize."
    )
    extra: dict[str, Quantity] = Field(
        default_factory=dict,
        description=(
            "Other resources by their Kubernetes name, e.g. rdma/hca_shared_devices_a: 1 or hugepages-2Mi: 1Gi "
            "(extended resources need the same value in requests and limits). GPUs: resources.gpusPerNode."
        ),
    )

    @field_validator("extra")
    @classmethod
    def _extra_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name in MANAGED_RESOURCE_NAMES:
                raise ValueError(f"{name!r} has its own field (cpu, memory, ephemeralStorage, "
                                 "resources.gpusPerNode); do not set it in extra")
            if not _RESOURCE_NAME.match(name) or len(name) > 253:
                raise ValueError(f"{name!r} is not a Kubernetes resource name (e.g. rdma/hca_shared_devices_a)")
        return v


class ResourcesSpec(APIModel):
    """Where and on what the trainer pods run."""

    nodes: int = Field(1, ge=1, le=1024, description="Trainer pods (nodes); one torchrun per pod.")
    gpus_per_node: int = Field(
        0, ge=0, le=64, description="GPUs per pod (nvidia.com/gpu); 0 trains on CPU with one process per pod."
    )
    image: str | None = Field(None, description="Trainer image; default: the operator's configured trainer image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Image pull policy of trainer pods."
    )
    requests: ResourceList = Field(default_factory=ResourceList, description="CPU/memory requests per pod.")
    limits: ResourceList = Field(default_factory=ResourceList, description="CPU/memory limits per pod.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector of trainer pods.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations of trainer pods.")
    priority_class_name: str | None = Field(None, description="PriorityClass of trainer pods.")
    shm_size: Quantity = Field("8Gi", description="Size of the in-memory /dev/shm volume (NCCL needs more than 64Mi).")
    workspace_size: Quantity = Field(
        "100Gi",
        description=(
            "Local disk of /workspace (model, data, checkpoints and export before upload): the emptyDir's "
            "sizeLimit and, unless requests.ephemeralStorage says otherwise, the pod's ephemeral-storage request, "
            "so the scheduler picks a node with that much disk and the kubelet does not evict the pod first."
        ),
    )
    cache_volume_claim: str | None = Field(
        None,
        description=(
            "A PersistentVolumeClaim mounted at /workspace/.cache: the hub download cache and the torch.compile "
            "and Triton caches then survive restarts (no recompile). Several nodes need a ReadWriteMany claim."
        ),
    )
    service_account_name: str | None = Field(
        None, description="Use this ServiceAccount instead of the per-job one the operator creates."
    )

    @field_validator("cache_volume_claim")
    @classmethod
    def _claim_name(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > 253 or not all(_DNS1123.match(part) for part in v.split("."))):
            raise ValueError(f"{v!r} is not a PersistentVolumeClaim name (lower-case letters, digits, '-' and '.')")
        return v

    @model_validator(mode="after")
    def _extended_resources_match(self) -> ResourcesSpec:
        rules.check_resources(self)
        return self

    def processes(self) -> int:
        """Trainer processes of the job: one per GPU, or one per pod on CPU."""
        return self.nodes * max(self.gpus_per_node, 1)


class CheckpointSpec(APIModel):
    """Where checkpoints go and how many are kept."""

    uri: StorageURI = Field(..., description="Checkpoint location: s3://bucket/prefix, file:///abs/path or a path.")
    every_steps: int = Field(50, ge=1, description="Checkpoint every N optimizer steps (and on SIGTERM).")
    keep: int = Field(3, ge=1, le=1000, description="Keep the newest K complete checkpoints.")
    on_spec_change: Literal["fail", "resume", "restart"] = Field(
        "fail",
        description=(
            "When the newest checkpoint at uri was written under other training settings (model, dataset, "
            "reward, stages, grpo): fail (the job fails and names what changed), resume (continue from it "
            "anyway) or restart (delete those checkpoints and train from step 0; retries then resume the "
            "new ones). Other fields (resources, storage, output) never count as a change."
        ),
    )


class OutputSpec(APIModel):
    """Where the final model is exported."""

    uri: StorageURI = Field(..., description="Export location of the adapter, merged model, metrics and report.")
    merge_adapter: bool = Field(True, description="Also export the model with the LoRA adapter merged in.")


class SecretKeyRef(APIModel):
    """A reference to a Kubernetes Secret holding S3 credentials (never the values)."""

    name: str = Field(..., min_length=1, description="Secret name in the job's namespace.")
    access_key_id_key: str = Field("AWS_ACCESS_KEY_ID", description="Key of the access key id in the Secret.")
    secret_access_key_key: str = Field("AWS_SECRET_ACCESS_KEY", description="Key of the secret access key in the Secret.")
    session_token_key: str | None = Field(None, description="Key of an optional session token in the Secret.")


class StorageSpec(APIModel):
    """S3 connection settings for every s3:// location of the job."""

    endpoint: str | None = Field(
        None, description="S3 endpoint URL (MinIO, SeaweedFS, Ceph...); default: AWS for the region."
    )
    region: str | None = Field(None, description="S3 region; default: from the environment.")
    path_style: bool = Field(False, description="Use path-style addressing (needed by most self-hosted S3 servers).")
    credentials_secret: SecretKeyRef | None = Field(
        None,
        description="Secret with the S3 credentials, injected into pods as AWS_* env; default: the pod's own identity.",
    )
    multipart_chunk_mb: int = Field(64, ge=5, le=5120, description="Multipart chunk size in MiB.")
    max_concurrency: int = Field(8, ge=1, le=128, description="Parallel transfer threads.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if has_userinfo(v):  # before anything quotes it: the message shows it redacted
            raise ValueError("credentials must not be written into the endpoint URL; use credentialsSecret")
        if not re.match(r"^(https?)://([^/]+)", v):
            raise ValueError(f"{redact_uri(v)!r} must be an http:// or https:// URL")
        return v


class RunPolicy(APIModel):
    """Retries, deadlines and suspension."""

    max_restarts: int = Field(3, ge=0, le=1000, description="Failed attempts retried from the newest checkpoint.")
    active_deadline_seconds: int | None = Field(
        None,
        ge=1,
        description=(
            "Fail the job with DeadlineExceeded after this long active, counted from status.startTime "
            "(the first start, reset on every resume as for a Kubernetes Job: suspended time never counts)."
        ),
    )
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description=("Delete the RARLJob this long after it succeeded or failed (the operator; a local "
                                 "job stays until rarlctl delete).")
    )
    suspend: bool = Field(False, description="true stops the trainer (checkpoint first); false resumes it.")
    collective_timeout_seconds: int = Field(
        7200,
        ge=10,
        le=7 * 24 * 3600,
        description=(
            "How long a rank waits in a collective (NCCL or gloo process-group timeout) before the attempt fails. "
            "torch's NCCL default is 10 minutes, which a slow rank (a large upload, a cold cache) can exceed."
        ),
    )


class LoggingSpec(APIModel):
    """Training dashboards: the trackers the trainer reports its per-step figures to (TRL's report_to)."""

    report_to: list[Literal["tensorboard", "wandb", "mlflow", "none"]] = Field(
        default_factory=lambda: ["tensorboard"],
        min_length=1,
        description=(
            "Trackers the trainer logs to: tensorboard (event files under <run dir>/tensorboard, uploaded to "
            "<checkpoint.uri>/tensorboard/ with every checkpoint), wandb, mlflow, or [none]. A tracker that is "
            "not installed in the trainer image makes the trainer exit 2."
        ),
    )
    credentials_secret: str | None = Field(
        None,
        description=(
            "Name of a Kubernetes Secret in the job's namespace whose keys become environment variables of the "
            "trainer pods (WANDB_API_KEY, MLFLOW_TRACKING_URI...). Only the name is stored; values never enter "
            "the manifests."
        ),
    )

    @field_validator("report_to")
    @classmethod
    def _none_alone(cls, v: list[str]) -> list[str]:
        if "none" in v and len(v) > 1:
            raise ValueError("'none' cannot be combined with a tracker: use [none] alone or name the trackers")
        return list(dict.fromkeys(v))

    @field_validator("credentials_secret")
    @classmethod
    def _secret_name(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", v)):
            raise ValueError(f"{v!r} is not a Secret name (lowercase letters, digits, '-' and '.', at most 253)")
        return v


class RARLJobSpec(APIModel):
    """What to train, on what, with which reward and stages, and where it runs and stores."""

    model: ModelSpec = Field(..., description="The base model and how it is trained.")
    dataset: DatasetSpec = Field(..., description="The ordinal data and its target.")
    reward: RewardSpec = Field(default_factory=RewardSpec, description="RARL's ranking-aware reward.")
    stages: list[StageSpec] = Field(
        default_factory=default_stages,
        min_length=1,
        description="Training stages in order; default: regression warm-up (n = 1) then ranking-aware (n in 1, 2, 4, 8).",
    )
    grpo: GRPOSpec = Field(default_factory=GRPOSpec, description="GRPO settings shared by the grpo stages.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Nodes, GPUs, image and scheduling.")
    checkpoint: CheckpointSpec = Field(..., description="Checkpoint location and retention.")
    output: OutputSpec = Field(..., description="Export location of the final model.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="S3 connection for s3:// locations.")
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Retries, deadline, TTL and suspension.")
    logging: LoggingSpec = Field(
        default_factory=LoggingSpec, description="Training dashboards (TensorBoard, W&B, MLflow) and their credentials."
    )

    @model_validator(mode="after")
    def _semantics(self) -> RARLJobSpec:
        rules.check_spec(self)
        return self

    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def delta(self) -> float:
        """The regression tolerance in target units (spec value or a tenth of the range)."""
        t = self.dataset.target
        return self.reward.delta if self.reward.delta is not None else (t.max - t.min) / 10.0


# --------------------------------------------------------------------------- status


class Condition(APIModel):
    """A Kubernetes-style condition."""

    type: str = Field(..., description="Condition type, e.g. Running, Succeeded, Failed, Suspended, InvalidSpec.")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    reason: str | None = Field(None, description="One CamelCase word for the last transition.")
    message: str | None = Field(None, description="Human-readable details.")
    last_transition_time: str | None = Field(None, description="When the status last changed (RFC 3339).")


class RARLJobStatus(APIModel):
    """Observed state, computed by the operator from the child Job and pods and by the trainer's reports."""

    model_config = ConfigDict(allow_inf_nan=True)  # observed, not asked for: read back as the trainer wrote it

    phase: Phase | None = Field(None, description="Pending, Running, Succeeded, Failed, Suspended or Restarting.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations of the job's state.")
    stage: str | None = Field(None, description="Name of the running stage.")
    step: int | None = Field(None, ge=0, description="Optimizer steps done, over all stages.")
    total_steps: int | None = Field(None, ge=0, description="Optimizer steps of all stages.")
    reward: float | None = Field(None, description="Mean total reward of the latest logged step.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Latest evaluation metrics by name.")
    latest_checkpoint: str | None = Field(None, description="URI of the newest complete checkpoint.")
    model_uri: str | None = Field(None, alias="modelURI", description="URI of the exported model once Succeeded.")
    restarts: int = Field(0, ge=0, description="Failed attempts retried so far (disruptions do not count).")
    attempt: int = Field(0, ge=0, description="Index of the current attempt (its Job is <name>-attempt-<attempt>).")
    start_time: str | None = Field(
        None, description="When the job started, or was last resumed (RFC 3339); activeDeadlineSeconds counts from it."
    )
    completion_time: str | None = Field(None, description="When the job succeeded or failed (RFC 3339).")
    eta_seconds: float | None = Field(None, ge=0, description="Estimated seconds until the last stage ends.")
    observed_generation: int | None = Field(None, description="The metadata.generation this status reflects.")


class ObjectMeta(BaseModel):
    """The subset of Kubernetes ObjectMeta a user writes; server-set fields are kept as they come."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(
        ...,
        description=(
            "Job name: lowercase letters, digits and '-', starting with a letter (it also names the headless "
            "Service), at most 40 characters (child Jobs and pod hostnames append '-attempt-<k>-<index>')."
        ),
    )
    namespace: str | None = Field(None, description="Namespace; default: the client's namespace.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels, copied to the trainer pods.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations, copied to the trainer pods.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if len(v) > MAX_NAME_LENGTH:
            raise ValueError(
                f"{v!r} is {len(v)} characters; at most {MAX_NAME_LENGTH} (pod hostnames add '-attempt-<k>-<index>')"
            )
        if not _DNS1035.match(v):
            raise ValueError(
                f"{v!r} is not a DNS-1035 label: lowercase letters, digits and '-', starting with a letter and "
                "ending with a letter or digit"
            )
        return v

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > 63 or not _DNS1123.match(v)):
            raise ValueError(f"{v!r} is not a namespace name (DNS-1123 label: at most 63 lowercase letters, digits "
                             "and '-', starting and ending with a letter or digit)")
        return v

    @field_validator("labels", "annotations")
    @classmethod
    def _keys(cls, v: dict[str, str], info) -> dict[str, str]:
        for key, value in v.items():
            prefix, _, name = key.rpartition("/")
            if (not _LABEL_NAME.match(name) or (prefix and (len(prefix) > 253 or not all(
                    _DNS1123.match(part) for part in prefix.split("."))))):
                raise ValueError(f"key {key!r} is not a Kubernetes key: [prefix/]name, the name at most 63 letters, "
                                 "digits, '-', '_' and '.', starting and ending with a letter or digit; the prefix "
                                 "a DNS subdomain")
            if info.field_name == "labels" and value and not _LABEL_NAME.match(value):
                raise ValueError(f"value {value!r} of label {key!r} is not a label value: empty, or at most 63 "
                                 "letters, digits, '-', '_' and '.', starting and ending with a letter or digit")
        return v


class RARLJob(APIModel):
    """A RARL training job: the custom resource ``rarljobs.rarl.dev``."""

    api_version: Literal["rarl.dev/v1alpha1"] = Field(
        GROUP_VERSION, description="rarl.dev/v1alpha1."
    )
    kind: Literal["RARLJob"] = Field(KIND, description="RARLJob.")
    metadata: ObjectMeta = Field(..., description="Name, namespace, labels and annotations.")
    spec: RARLJobSpec = Field(..., description="The desired training job.")
    # Always present (empty before the first report), so ``job.status.phase`` needs no None check.
    status: RARLJobStatus = Field(
        default_factory=RARLJobStatus,
        description="Observed state (written by the operator and trainer).",
        json_schema_extra=lambda schema: schema.update(anyOf=[{"$ref": schema.pop("$ref")}, {"type": "null"}]),
    )

    @field_validator("status", mode="before")
    @classmethod
    def _status_present(cls, v: Any) -> Any:
        return {} if v is None else v

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_dict(self, *, include_status: bool = True) -> dict[str, Any]:
        """The camelCase document, without unset optional fields."""
        doc = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        if not include_status or doc.get("status") == RARLJobStatus().model_dump(by_alias=True, exclude_none=True,
                                                                                   mode="json"):
            doc.pop("status", None)  # an empty status is not written
        return doc

    def to_yaml(self, *, include_status: bool = True) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(include_status=include_status), sort_keys=False)
