"""Seeded synthetic items: k shapes drawn on a PNG, or k times "apple" among other fruit in a text.

Each split has its own seed (eval: the train seed + ``SYNTHETIC_EVAL_SEED_OFFSET``), so the two
never share items; PNG files are written once into a cache folder keyed by the generator's settings.
``max_items`` keeps the first train items (they are already in random order).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from rarl.api.rules import synthetic_target_error
from rarl_trainer.data.items import DataError, Dataset, Item, Split

if TYPE_CHECKING:
    from rarl.api.types import DatasetSpec, TargetSpec

SYNTHETIC_EVAL_SEED_OFFSET = 1_000_003

_COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (128, 128, 0), (0, 0, 128)]
_FRUITS = ["pear", "plum", "banana", "cherry", "grape", "lemon", "mango"]


def _draw_shapes(k: int, size: int, rng: np.random.Generator) -> Image.Image:
    """k non-overlapping circles/squares/triangles on a light canvas (grid fallback when crowded)."""
    img = Image.new("RGB", (size, size), (245, 245, 240))
    draw = ImageDraw.Draw(img)
    radius = max(3, size // 14)
    boxes: list[tuple[float, float]] = []
    for _ in range(k):
        placed = None
        for _attempt in range(200):
            cx = float(rng.uniform(radius + 1, size - radius - 1))
            cy = float(rng.uniform(radius + 1, size - radius - 1))
            if all((cx - x) ** 2 + (cy - y) ** 2 >= (2.2 * radius) ** 2 for x, y in boxes):
                placed = (cx, cy)
                break
        if placed is None:  # crowded canvas: first free cell of a grid
            cells = math.ceil(math.sqrt(k)) + 1
            step = size / cells
            for gy in range(cells):
                for gx in range(cells):
                    cand = ((gx + 0.5) * step, (gy + 0.5) * step)
                    if all((cand[0] - x) ** 2 + (cand[1] - y) ** 2 >= (1.5 * radius) ** 2 for x, y in boxes):
                        placed = cand
                        break
                if placed:
                    break
            placed = placed or (size / 2, size / 2)
        boxes.append(placed)
        cx, cy = placed
        color = _COLORS[int(rng.integers(len(_COLORS)))]
        shape = int(rng.integers(3))
        if shape == 0:
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
        elif shape == 1:
            draw.rectangle([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
        else:
            draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=color)
    return img


def _synthetic_text(k: int, rng: np.random.Generator, max_k: int) -> str:
    distractors = int(rng.integers(1, max(2, max_k // 2 + 2)))
    words = ["apple"] * k + [_FRUITS[int(rng.integers(len(_FRUITS)))] for _ in range(distractors)]
    order = rng.permutation(len(words))
    return " ".join(words[int(i)] for i in order)


def generate_synthetic(
    count: int,
    seed: int,
    target: TargetSpec,
    modality: str = "image",
    image_size: int = 64,
    out_dir: Path | None = None,
    prefix: str = "syn",
) -> list[Item]:
    """``count`` seeded items with k in [min, max] shapes (PNG files in ``out_dir``) or apples in a text.

    Same arguments, same items and same image bytes; existing files are reused.
    """
    error = synthetic_target_error(target.min, target.max)
    if error is not None:
        raise DataError(error)
    lo, hi = math.ceil(target.min), math.floor(target.max)
    rng = np.random.default_rng(seed)
    ks = rng.integers(lo, hi + 1, size=count)
    items: list[Item] = []
    if modality == "text":
        for i, k in enumerate(ks):
            item_rng = np.random.default_rng([seed, i])
            items.append(Item(id=f"{prefix}-{i:06d}", image=None, text=_synthetic_text(int(k), item_rng, hi),
                              target=float(k)))
        return items
    if out_dir is None:
        raise DataError("synthetic image items need a folder to write PNG files into")
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, k in enumerate(ks):
        path = out_dir / f"{prefix}-{i:06d}-k{int(k)}.png"
        if not path.is_file():
            img = _draw_shapes(int(k), image_size, np.random.default_rng([seed, i]))
            tmp = path.with_suffix(".tmp")
            img.save(tmp, format="PNG")
            tmp.replace(path)
        items.append(Item(id=path.stem, image=str(path), text=None, target=float(k)))
    return items


def _synthetic_cache(spec: DatasetSpec, cache_dir: Path | None) -> Path:
    syn = spec.synthetic
    key = json.dumps([syn.seed, syn.image_size, syn.train_size, syn.eval_size,
                      spec.target.min, spec.target.max], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    base = cache_dir if cache_dir is not None else Path(tempfile.gettempdir()) / "rarl-synthetic"
    return base / f"synthetic-{digest}"


def synthetic_split(
    spec: DatasetSpec,
    split: Split,
    cache_dir: Path | None,
    on_progress: Callable[[str], None] | None = None,
) -> Dataset:
    """The generated items of ``split`` for a ``format: synthetic`` spec."""
    syn = spec.synthetic
    folder = _synthetic_cache(spec, cache_dir) / split
    count = syn.train_size if split == "train" else syn.eval_size
    seed = syn.seed if split == "train" else syn.seed + SYNTHETIC_EVAL_SEED_OFFSET
    if on_progress:
        on_progress(f"generating {count} synthetic {spec.modality} items")
    items = generate_synthetic(count, seed, spec.target, spec.modality, syn.image_size,
                               folder if spec.modality == "image" else None, prefix=f"syn-{split}")
    if split == "train" and spec.max_items is not None:
        items = items[: spec.max_items]
    return Dataset(items, spec.target, 0, [], split)
