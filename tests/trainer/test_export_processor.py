"""An exported VLM's processor loads without torchvision and processes prompts as training did (issue 17, item 9).

``AutoProcessor.from_pretrained(<export>/model)`` needs torchvision for Qwen2/2.5-VL (transformers
builds a video processor, and video processors require torchvision); ``load_exported_processor``
loads the same folder with the PIL image processor and no video part.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from rarl.api.types import LoRASpec, ModelSpec
from rarl_trainer.export import save_model
from rarl_trainer.models import ModelLoadError, load_exported_processor, load_model


def _prompt(processor, n_images: int):
    from PIL import Image

    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": "How many shapes?"}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         tokenize=False)
    images = [Image.new("RGB", (32 + 32 * i, 32), (40 * i, 90, 200)) for i in range(n_images)]
    return processor(text=[text], images=[images], return_tensors="pt")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny VLM with LoRA, exported as the trainer exports it (adapter/ + merged model/)."""
    loaded = load_model(ModelSpec(base="builtin:tiny-qwen2.5-vl", lora=LoRASpec(enabled=True, r=4, alpha=8)))
    training_processor = loaded.processor
    dest = tmp_path_factory.mktemp("export")
    assert save_model(loaded, dest) == {"adapter": "adapter", "model": "model"}
    return dest, training_processor


def test_exported_vlm_processor_loads_and_matches_training(exported):
    dest, training = exported
    processor = load_exported_processor(dest / "model")
    assert processor.video_processor is None  # nothing here needed torchvision
    assert processor.chat_template == training.chat_template
    assert processor.image_processor.to_dict() == training.image_processor.to_dict()
    for n in (1, 2):
        got, want = _prompt(processor, n), _prompt(training, n)
        assert set(got) == set(want)
        for key in want:
            assert torch.equal(got[key], want[key]), key

    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(dest / "model")
    inputs = _prompt(processor, 2)
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_auto_processor_needs_torchvision_for_the_export(exported):
    """Why load_exported_processor exists; the day transformers loads it without torchvision, this says so."""
    from transformers import AutoProcessor

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here: the failure this documents cannot happen")
    with pytest.raises(ImportError, match="Torchvision"):
        AutoProcessor.from_pretrained(exported[0] / "model")


def test_exported_text_model_gives_its_tokenizer(tmp_path):
    loaded = load_model(ModelSpec(base="builtin:tiny-lm", lora=LoRASpec(enabled=False)))
    save_model(loaded, tmp_path)
    tok = load_exported_processor(tmp_path / "model")
    text = "<think>\n</think><answer>[3]</answer>"
    assert tok(text)["input_ids"] == loaded.tokenizer(text)["input_ids"]


def test_adapter_folder_is_a_clear_error(exported):
    with pytest.raises(ModelLoadError, match="model/ folder"):
        load_exported_processor(exported[0] / "adapter")
