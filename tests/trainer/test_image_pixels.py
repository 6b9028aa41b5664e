"""Image sizes: ``spec.model.vision`` sets the processor's pixel range (training, evaluation, export, predict),
large images are shrunk once when read, and each image is decoded once per batch TRL fetches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rarl.api.types import DEFAULT_MAX_PIXELS, LoRASpec, ModelSpec, VisionSpec

VLM = "builtin:tiny-qwen2.5-vl"
TOKEN = 28 * 28  # pixels per image token of Qwen2/2.5-VL (14-pixel patches merged 2 x 2)
# Qwen2.5-VL's hub preprocessor_config.json (Qwen/Qwen2.5-VL-3B-Instruct): the range the defect is about.
HUB_MIN, HUB_MAX = 3136, 12845056


@pytest.fixture(scope="module")
def hub_like(tmp_path_factory) -> Path:
    """The tiny VLM with the hub processor's pixel range (its own builder caps images at 56 x 56)."""
    from rarl_trainer.builtin_models import TINY_VLM, builtin_path

    dest = tmp_path_factory.mktemp("hub-like") / "model"
    shutil.copytree(builtin_path(TINY_VLM), dest)
    cfg_path = dest / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["size"] = {"shortest_edge": HUB_MIN, "longest_edge": HUB_MAX}
    cfg_path.write_text(json.dumps(cfg))
    return dest


def _load(base, vision: VisionSpec | None = None):
    from rarl_trainer.models import load_model

    spec = ModelSpec(base=str(base), lora=LoRASpec(enabled=False), **({"vision": vision} if vision else {}))
    return load_model(spec)


def image_tokens(processor, image) -> tuple[int, int]:
    """(image tokens in the prompt, pixel_values rows) of one image through the processor."""
    text = "<|vision_start|><|image_pad|><|vision_end|>"
    out = processor(images=[image], text=[text], return_tensors="pt")
    tokens = int((out["input_ids"] == processor.image_token_id).sum())
    return tokens, int(out["pixel_values"].shape[0])


def _jpeg(path: Path, size: tuple[int, int]) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = size
    # smooth gradients + noise: a photo-like JPEG (not a flat colour that any resize keeps exact)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 255 // (w + h))], axis=-1).astype(np.int16)
    arr = np.clip(arr + rng.integers(-20, 20, arr.shape), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=90)
    return path


# --------------------------------------------------------------------------- the processor's range


def test_max_pixels_bounds_the_image_tokens_of_a_large_image(hub_like):
    """2000 x 1500 through the hub range is 3834 tokens; the spec's default and a small maxPixels cut it."""
    from PIL import Image

    big = Image.new("RGB", (2000, 1500), (120, 60, 200))
    own = _load(hub_like, VisionSpec(max_pixels=None))
    tokens_own, rows_own = image_tokens(own.processor, big)
    assert tokens_own > DEFAULT_MAX_PIXELS // TOKEN  # the defect: 12.8 M pixels allowed
    assert rows_own == 4 * tokens_own

    default = _load(hub_like)
    tokens_default, rows_default = image_tokens(default.processor, big)
    assert tokens_default <= DEFAULT_MAX_PIXELS // TOKEN < tokens_own
    assert rows_default == 4 * tokens_default

    small = _load(hub_like, VisionSpec(max_pixels=100 * TOKEN))
    tokens_small, _ = image_tokens(small.processor, big)
    assert 0 < tokens_small <= 100
    assert small.pixels.tokens(2000, 1500) == tokens_small  # the budget predicts the processor exactly


def test_min_pixels_enlarges_a_tiny_image(hub_like):
    from PIL import Image

    tiny = Image.new("RGB", (40, 30), (10, 200, 30))
    plain, _ = image_tokens(_load(hub_like, VisionSpec(max_pixels=None)).processor, tiny)
    enlarged, _ = image_tokens(_load(hub_like, VisionSpec(min_pixels=64 * TOKEN)).processor, tiny)
    assert plain < 64 <= enlarged


def test_builtin_processor_takes_the_spec_range():
    loaded = _load(VLM, VisionSpec(min_pixels=4 * TOKEN, max_pixels=9 * TOKEN))
    size = loaded.processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (4 * TOKEN, 9 * TOKEN)
    assert (loaded.pixels.min_pixels, loaded.pixels.max_pixels, loaded.pixels.factor) == (4 * TOKEN, 9 * TOKEN, 28)


def test_export_and_predict_keep_the_range(hub_like, tmp_path):
    """The exported processor holds the job's range; ``predict`` loads it without imposing its own."""
    from PIL import Image

    from rarl_trainer.export import save_model
    from rarl_trainer.predict import load_export

    loaded = _load(hub_like, VisionSpec(max_pixels=100 * TOKEN))
    save_model(loaded, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "model" / "preprocessor_config.json").read_text())
    assert saved["size"]["longest_edge"] == 100 * TOKEN

    reloaded = load_export(tmp_path / "out")
    assert reloaded.pixels.max_pixels == 100 * TOKEN
    tokens, _ = image_tokens(reloaded.processor, Image.new("RGB", (2000, 1500)))
    assert tokens <= 100


def test_a_processor_without_a_pixel_range_refuses_a_vision_spec():
    from rarl_trainer.models import ModelLoadError, apply_vision

    class OtherImageProcessor:
        size = (224, 224)

    class OtherProcessor:
        image_processor = OtherImageProcessor()

    with pytest.raises(ModelLoadError, match=r"spec\.model\.vision.*OtherImageProcessor"):
        apply_vision(OtherProcessor(), VisionSpec(max_pixels=200_000), "some/vlm")
    assert apply_vision(OtherProcessor(), VisionSpec(), "some/vlm") is None  # the default: told, left alone
    assert apply_vision(OtherProcessor(), VisionSpec(max_pixels=None), "some/vlm") is None  # its own sizes


def test_text_models_take_no_pixel_range(tmp_path):
    """A text LM's tokenizer has no image sizes: a range is refused, 'the processor's own' (predict's) is fine."""
    from rarl_trainer.models import ModelLoadError, apply_vision

    lm = _load("builtin:tiny-lm")
    assert lm.pixels is None
    with pytest.raises(ModelLoadError, match=r"spec\.model\.vision"):
        apply_vision(lm.processor, VisionSpec(max_pixels=5000), "builtin:tiny-lm")
    assert _load("builtin:tiny-lm", VisionSpec(max_pixels=None)).pixels is None


# --------------------------------------------------------------------------- reading images


@pytest.mark.parametrize("size", [(2000, 1500), (1500, 2000), (4000, 300), (333, 777), (29, 29), (10, 50)])
def test_budget_sizes_match_the_processor(size):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from rarl_trainer.data import PixelBudget

    for low, high in ((HUB_MIN, HUB_MAX), (HUB_MIN, DEFAULT_MAX_PIXELS), (64 * TOKEN, 100 * TOKEN), (TOKEN, 4 * TOKEN)):
        h, w = smart_resize(size[1], size[0], factor=28, min_pixels=low, max_pixels=high)
        assert PixelBudget(low, high, 28).processor_size(*size) == (w, h)


def test_large_image_is_shrunk_once_to_the_processor_size(hub_like, tmp_path):
    """open_image hands the processor a 2000 x 1500 JPEG at the size it would resize it to: same grid, fewer pixels."""
    import torch
    from PIL import Image

    from rarl_trainer.data import Item, open_image

    path = _jpeg(tmp_path / "big.jpg", (2000, 1500))
    loaded = _load(hub_like)
    item = Item("big", str(path), None, 1.0)
    shrunk = open_image(item, loaded.pixels)
    assert shrunk.size == loaded.pixels.processor_size(2000, 1500)
    assert shrunk.size[0] * shrunk.size[1] <= DEFAULT_MAX_PIXELS
    assert open_image(item).size == (2000, 1500)  # without a budget: native size, as before

    text = ["<|vision_start|><|image_pad|><|vision_end|>"]
    full = loaded.processor(images=[Image.open(path).convert("RGB")], text=text, return_tensors="pt")
    pre = loaded.processor(images=[shrunk], text=text, return_tensors="pt")
    assert torch.equal(full["image_grid_thw"], pre["image_grid_thw"])
    assert torch.equal(full["input_ids"], pre["input_ids"])
    # not bit-identical (JPEG draft decoding + one bicubic resize vs the processor's), but the same picture
    diff = (full["pixel_values"] - pre["pixel_values"]).abs().mean().item()
    assert diff < 0.1, diff

    small = _jpeg(tmp_path / "small.jpg", (40, 30))
    assert open_image(Item("s", str(small), None, 1.0), loaded.pixels).size == (40, 30)  # never enlarged here


# --------------------------------------------------------------------------- decodes per step


def _count_opens(monkeypatch) -> list[str]:
    import PIL.Image

    opened: list[str] = []
    real = PIL.Image.open

    def spy(fp, *a, **k):
        opened.append(str(fp))
        return real(fp, *a, **k)

    monkeypatch.setattr(PIL.Image, "open", spy)
    return opened


def test_each_image_is_decoded_once_per_step_not_once_per_generation(tmp_path, monkeypatch):
    """Tiny VLM, 4 generations a query: TRL's batch repeats each query 4 times; its images are decoded once."""
    from tests.trainer.conftest import first_stage_trainer, job_doc

    stages = [{"name": "s1", "steps": 2, "listSizes": [2], "rmo": {"enabled": False}}]
    doc = job_doc(tmp_path, base=VLM, modality="image", stages=stages, numGenerations=4, perDeviceBatchSize=8)
    _, trainer = first_stage_trainer(tmp_path, doc)
    assert trainer.num_generations == 4
    opened = _count_opens(monkeypatch)
    batches = list(trainer.get_train_dataloader())  # accelerate fetches one batch ahead: count the whole stage
    assert len(batches) == 2
    assert [len(b) for b in batches] == [8, 8]  # a step: 2 queries x 4 generations, 2 images each
    assert len(opened) == 8, len(opened)  # 2 steps x 2 queries x 2 images: one decode each, not one per generation
    for batch in batches:
        images = [id(img) for row in batch for img in row["images"]]
        assert len(images) == 16 and len(set(images)) == 4  # the 4 generations of a query share its images
    trainer._generate_and_score_completions(batches[0])  # a step still runs on the shared images


def test_a_batch_fetched_again_is_not_decoded_again(tmp_path, monkeypatch):
    """TRL fetches one generation batch once per step of a round (steps_per_generation x num_iterations)."""
    from rarl.api.types import DatasetSpec
    from rarl_trainer.data import Item
    from rarl_trainer.prompts import Query
    from rarl_trainer.queries import QueryTable

    items = [Item(f"i{k}", str(_jpeg(tmp_path / f"{k}.jpg", (64, 48))), None, float(k + 1)) for k in range(4)]
    spec = DatasetSpec(format="jsonl", train=str(tmp_path / "x.jsonl"), target={"min": 1, "max": 5})
    table = QueryTable([Query((items[0], items[1])), Query((items[2],)), Query((items[3],))], spec, "image")
    opened = _count_opens(monkeypatch)
    first = table.rows([0, 0, 1, 1])
    again = table.rows([0, 0, 1, 1])
    assert len(opened) == 3  # items 0, 1, 2 once each
    assert [id(im) for r in again for im in r["images"]] == [id(im) for r in first for im in r["images"]]
    table.rows([2, 2])
    table.rows([0])
    assert len(opened) == 3 + 1 + 2  # only the previous fetch is kept: memory stays one batch


def test_the_runs_training_and_evaluation_tables_shrink_with_the_models_budget(tmp_path, monkeypatch):
    """The loop hands the model's pixel budget to every query table it builds (training stages and the
    evaluation), so large images are shrunk when read there too, not only in predict."""
    import rarl_trainer.queries as queries
    from tests.trainer.conftest import first_stage_trainer, job_doc

    built: list = []
    real_init = queries.QueryTable.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(queries.QueryTable, "__init__", spy)
    stages = [{"name": "s1", "steps": 1, "listSizes": [1], "rmo": {"enabled": False}}]
    doc = job_doc(tmp_path, base=VLM, modality="image", stages=stages, numGenerations=2, perDeviceBatchSize=2)
    training, _ = first_stage_trainer(tmp_path, doc)
    training.evaluator.table  # noqa: B018 (built at the first use)
    assert training.loaded.pixels is not None
    assert len(built) == 2 and all(t.pixels == training.loaded.pixels for t in built), [t.pixels for t in built]
