"""Model loading: a hub id, a local folder, ``file://``, ``s3://`` or ``builtin:<name>`` (``builtin_models``).

Without torchvision, the stock Qwen2/2.5-VL processors fail on the missing video processor:
``NoVideoQwen2_5_VLProcessor`` accepts ``video_processor=None`` and the image processor is the
PIL one (``Qwen2VLImageProcessorPil``); processors are saved as image processor + tokenizer.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
)
from transformers.image_utils import SizeDict
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from rarl.api.types import VisionSpec
from rarl.api.uri import InvalidURI, builtin_name, has_scheme, is_s3, local_path, names_a_path
from rarl.storage import cached_download
from rarl_trainer.builtin_models import VISION_TOKENS, BuiltinModelError, builtin_path
from rarl_trainer.data import PixelBudget
from rarl_trainer.prompts import template_takes_parts

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from rarl.api.types import ModelSpec, StorageSpec


class ModelLoadError(Exception):
    """The model location cannot be resolved or loaded (a configuration error: exit code 2)."""


# --------------------------------------------------------------------------- processor


def _no_video_processor_class(base):
    """A subclass of a Qwen VL processor that works without a video processor (no torchvision)."""

    class NoVideoProcessor(base):
        def __init__(self, image_processor=None, tokenizer=None, video_processor=None, chat_template=None, **kw):
            # ProcessorMixin insists on every attribute; give it a placeholder and drop it afterwards.
            self._skip_video = video_processor is None
            super().__init__(image_processor, tokenizer, video_processor or _NullVideo(), chat_template, **kw)
            if self._skip_video:
                self.video_processor = None

        @classmethod
        def get_attributes(cls):
            return ["image_processor", "tokenizer", "video_processor"]

        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor":
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

        def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
            """Image processor + tokenizer (+ chat template): the stock save fails without a video processor."""
            if push_to_hub:
                raise NotImplementedError(f"{type(self).__name__} saves to a folder only; upload the folder "
                                          "with huggingface_hub")
            os.makedirs(save_directory, exist_ok=True)
            self.image_processor.save_pretrained(save_directory)
            self.tokenizer.save_pretrained(save_directory)
            return [str(save_directory)]

    NoVideoProcessor.__name__ = f"NoVideo{base.__name__}"
    NoVideoProcessor.__qualname__ = NoVideoProcessor.__name__
    return NoVideoProcessor


class _NullVideo:
    """Placeholder accepted in the video processor slot during ProcessorMixin's init."""

    merge_size = 2


_PROCESSOR_CLASSES: dict[str, Any] = {}


def no_video_processor_class(model_type: str):
    """The processor class for a Qwen VL model type that tolerates a missing video processor."""
    if model_type not in _PROCESSOR_CLASSES:
        base = Qwen2VLProcessor if model_type == "qwen2_vl" else Qwen2_5_VLProcessor
        _PROCESSOR_CLASSES[model_type] = _no_video_processor_class(base)
    return _PROCESSOR_CLASSES[model_type]


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """A model with what training and generation need alongside it."""

    model: Any
    processor: Any  # a ProcessorMixin for VLMs, the tokenizer for text LMs
    tokenizer: Any
    is_vlm: bool
    path: Path
    suppress_tokens: list[int] = field(default_factory=list)
    string_content: bool = False  # its chat template renders string content only (prompts.template_takes_parts)
    pixels: Any = None  # data.PixelBudget its image processor resizes into (Qwen-VL processors), else None
    dtype: Any = None  # spec.model.dtype resolved: the compute dtype and the export's (weights may be float32 masters)

    def generation_kwargs(self) -> dict[str, Any]:
        """Extra generate() kwargs: never sample vision placeholders (the next forward would fail)."""
        return {"suppress_tokens": list(self.suppress_tokens)} if self.suppress_tokens else {}


def resolve_model_path(base: str, storage: StorageSpec | None = None) -> Path | str:
    """A local folder for builtin:, s3://, file:// locations and paths; hub ids are returned unchanged.

    A path that names a folder explicitly (``.``, ``/``, ``~``) and does not exist is an error, not a hub id.
    """
    name = builtin_name(base)
    if name is not None:
        try:
            return builtin_path(name)
        except BuiltinModelError as e:
            raise ModelLoadError(str(e)) from None
    if is_s3(base):
        return Path(cached_download(base, settings=storage))
    try:
        path = local_path(base)
    except InvalidURI as e:
        raise ModelLoadError(str(e)) from None
    if has_scheme(base) or path.exists():
        return path
    if names_a_path(base):
        raise ModelLoadError(f"model folder {base} does not exist")
    return base  # a hub id


def _is_vlm_config(config) -> bool:
    return getattr(config, "vision_config", None) is not None


def load_processor(path: Path | str, config, trust_remote_code: bool = False):
    """The processor of a VLM (tolerating a missing video processor) or the tokenizer of a text LM."""
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not _is_vlm_config(config):
        return tokenizer, tokenizer
    model_type = getattr(config, "model_type", "")
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path)
        cls = no_video_processor_class(model_type)
        return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template), tokenizer

    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    return processor, processor.tokenizer


def load_exported_processor(path: Path | str, trust_remote_code: bool = False):
    """The processor of an exported model folder (``<output.uri>/model``), with or without torchvision.

    ``AutoProcessor.from_pretrained(folder)`` needs torchvision for a Qwen2/2.5-VL export:
    transformers builds the processor's video processor unconditionally, and every video
    processor requires torchvision. This loads the export as training did: the PIL image
    processor, the tokenizer and the chat template, in a processor without the video part
    (image prompts only); a text LM's export gives its tokenizer.
    """
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read the model config of {path}: {e} (an export's model/ folder, "
                             "not adapter/, holds one)") from e
    return load_processor(path, config, trust_remote_code)[0]


# --------------------------------------------------------------------------- image sizes

# Image processors that resize with Qwen2-VL's smart_resize into size.shortest_edge..longest_edge pixels.
_PIXEL_PROCESSORS = ("Qwen2VLImageProcessor", "Qwen2VLImageProcessorPil")


def _pixel_image_processor(processor):
    """The processor's image processor when it resizes into a pixel range (Qwen2/2.5-VL), else None."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None or not any(c.__name__ in _PIXEL_PROCESSORS for c in type(image_processor).__mro__):
        return None
    return image_processor


def pixel_budget(processor):
    """The ``data.PixelBudget`` of a processor (its current size range and grid), or None."""
    ip = _pixel_image_processor(processor)
    if ip is None:
        return None
    return PixelBudget(int(ip.size["shortest_edge"]), int(ip.size["longest_edge"]),
                       int(ip.patch_size) * int(ip.merge_size))


def apply_vision(processor, vision, base: str = "the model"):
    """Set ``spec.model.vision``'s pixel range on the processor; the ``data.PixelBudget`` it now resizes into.

    transformers 5 keeps the range in ``image_processor.size`` (``shortest_edge`` = min pixels,
    ``longest_edge`` = max pixels); ``save_pretrained`` writes it, so an export keeps the limit.
    None keeps the processor's own value. A processor without a pixel range (other VLMs, a text
    LM's tokenizer) is an error when the spec sets a range other than the default; a VLM's with the
    default is told on stderr and left as it is.
    """
    ip = _pixel_image_processor(processor)
    if ip is None:
        if vision.min_pixels is None and vision.max_pixels is None:
            return None  # "the processor's own" sizes: nothing to set (predict's request for any export)
        if vision != VisionSpec():
            raise ModelLoadError(
                f"spec.model.vision sets minPixels/maxPixels, but the processor of {base!r} "
                f"({type(getattr(processor, 'image_processor', processor)).__name__}) has no pixel range to set "
                "(Qwen2/2.5-VL processors have one): remove spec.model.vision")
        if getattr(processor, "image_processor", None) is not None:
            log.warning(f"rarl: spec.model.vision's default maxPixels does not apply to "
                        f"{type(processor.image_processor).__name__} of {base!r}; images reach it at the sizes its "
                        "processor chooses")
        return None

    low = int(vision.min_pixels) if vision.min_pixels is not None else int(ip.size["shortest_edge"])
    high = int(vision.max_pixels) if vision.max_pixels is not None else int(ip.size["longest_edge"])
    if low > high:
        raise ModelLoadError(f"spec.model.vision: minPixels {low} is above maxPixels {high} (one of them is the "
                             f"processor's own value of {base!r}): set both")
    ip.size = SizeDict(shortest_edge=low, longest_edge=high)
    return pixel_budget(processor)


def resolve_dtype(name: str):
    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def master_dtype(spec: ModelSpec, dtype):
    """The dtype the weights are loaded and trained in: float32 for full fine-tuning, else ``dtype``.

    Full fine-tuning updates every weight: AdamW steps of lr x ~1 on weights of magnitude ~0.02 are
    below half a bf16 ulp (2^-8 relative) at lr 1e-5, so bf16 weights would silently drop most updates.
    The weights stay float32 masters and compute runs in ``dtype`` (bf16 autocast; FSDP's mixed
    precision when sharded); the export is written in ``dtype``. LoRA's frozen base stays in ``dtype``
    (PEFT keeps the adapters in float32).
    """
    return dtype if spec.lora.enabled else torch.float32


def lora_target_modules(model, targets: list[str]) -> list[str] | str:
    """``all-linear`` -> every nn.Linear of the language model (not the vision tower, not the head)."""
    if targets != ["all-linear"]:
        return targets
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if name.endswith("lm_head") or ".visual." in f".{name}." or "vision" in name:
            continue
        names.append(name)
    return names


def apply_lora(model, lora, seed: int = 0):
    """Wrap the model with fresh LoRA adapters (PEFT) as the spec says.

    PEFT draws the A matrices from torch's global generator: it is seeded here, so one job and
    seed give one adapter init (the HF Trainer seeds only later, when it is built).
    """
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_target_modules(model, list(lora.target_modules)),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)
    return get_peft_model(model, config)


def load_model(spec: ModelSpec, storage: StorageSpec | None = None, device: str | None = None,
               seed: int = 0, master_weights: bool = True) -> LoadedModel:
    """Load the base model and processor from the spec, with LoRA applied when enabled.

    ``master_weights=False``: in ``spec.dtype`` even for full fine-tuning (a copy to export, not to train).
    """
    path = resolve_model_path(spec.base, storage)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load model {spec.base!r}: {e}") from e
    is_vlm = _is_vlm_config(config)
    dtype = resolve_dtype(spec.dtype)
    kwargs: dict[str, Any] = {"dtype": master_dtype(spec, dtype) if master_weights else dtype,
                              "trust_remote_code": spec.trust_remote_code}
    if spec.attn_implementation != "auto":
        kwargs["attn_implementation"] = spec.attn_implementation
    if is_vlm:
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    processor, tokenizer = load_processor(path, config, spec.trust_remote_code)
    pixels = apply_vision(processor, spec.vision, spec.base)

    string_content = not template_takes_parts(processor)
    if is_vlm and string_content:
        raise ModelLoadError(f"the chat template of {spec.base!r} renders string content only, but image prompts "
                             "need content parts (type image/text): use a vision-language model's processor")
    suppress = []
    if is_vlm:
        for tok in VISION_TOKENS:
            tid = tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
                suppress.append(tid)
        for attr in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
            tid = getattr(config, attr, None)
            if isinstance(tid, int) and tid not in suppress:
                suppress.append(tid)
    if device is not None:
        model.to(device)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    if spec.lora.enabled:
        model = apply_lora(model, spec.lora, seed=seed)
    return LoadedModel(model, processor, tokenizer, is_vlm, Path(path), suppress, string_content, pixels, dtype)
