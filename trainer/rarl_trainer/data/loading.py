"""Dataset readers: UTKFace, AVA, COCO-ReM, a JSONL manifest and a synthetic generator.

``load_items(spec, split)`` is the entry point: it reads the split (``spec.eval`` or a
deterministic held-out share of train), checks images, honours ``max_items`` and returns a
``Dataset`` with the items, the target spec, and what was skipped and why.

Locations go through ``resolve_location``, the one seam the storage layer replaces with a
cached s3:// download. Pure Python + numpy + Pillow; no torch.

Decisions:

* Targets outside [target.min, target.max] are skipped and counted (UTKFace names, COCO counts)
  or, for JSONL lines, are an error naming the line unless ``skip_bad_items``.
* UTKFace: files named ``age_gender_race_datetime.jpg`` (also the aligned ``....jpg.chip.jpg``),
  found recursively; any other file is skipped and counted (hidden files are ignored).
* AVA: target = mean vote rounded to the target precision; lines without votes are skipped.
* COCO-ReM: non-crowd instances of the category per image; an image with a crowd annotation of
  that category has no exact count and is skipped and counted.
* Held-out eval: a seeded permutation (seed 0) of the train items in reading order;
  ``ceil(eval_fraction * N)`` items (at least 1, at most N - 1) go to eval. ``max_items`` applies
  to train only, after a seeded shuffle.
* Image checks (``verify``): "full" opens and verifies every image (PIL ``verify``), "exists"
  only checks files exist, "none" skips checks; "auto" is full up to 20,000 images, else exists
  (then ``open_image`` reports corrupt files lazily, naming them).
* ``skipped_reasons`` keeps the first 100 reasons; ``skipped`` counts all.
"""

from __future__ import annotations

import contextvars
import difflib
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from rarl.api.types import DatasetSpec, TargetSpec

__all__ = [
    "DataError",
    "Dataset",
    "Item",
    "generate_synthetic",
    "load_items",
    "open_image",
    "read_ava",
    "read_coco_rem",
    "read_jsonl",
    "read_utkface",
    "resolve_location",
    "verify_image",
]

Split = Literal["train", "eval"]
VerifyMode = Literal["auto", "full", "exists", "none"]
AUTO_VERIFY_LIMIT = 20_000
MAX_REASONS = 100
SPLIT_SEED = 0
SYNTHETIC_EVAL_SEED_OFFSET = 1_000_003


class DataError(ValueError):
    """A dataset problem a user can fix; the message names the file (and line) involved."""


@dataclass(frozen=True)
class Item:
    """One thing to rate: an image path or a text, and its ground-truth target."""

    id: str
    image: str | None
    text: str | None
    target: float


@dataclass
class Dataset:
    """Items of one split, their target spec, and what was skipped (count and first reasons)."""

    items: list[Item]
    target: TargetSpec
    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)
    split: str = "train"

    def __len__(self) -> int:
        return len(self.items)


class _Skips:
    """Counts skipped items, keeps the first reasons, or raises when skipping is not allowed."""

    def __init__(self, allowed: bool):
        self.allowed = allowed
        self.count = 0
        self.reasons: list[str] = []

    def skip(self, reason: str, *, force: bool = False) -> None:
        if not (self.allowed or force):
            raise DataError(reason)
        self.count += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)


# --------------------------------------------------------------------------- locations


# S3 connection settings of the job being loaded (spec.storage), set by ``load_items``.
_STORAGE: contextvars.ContextVar[Any] = contextvars.ContextVar("rarl_dataset_storage", default=None)


def builtin_manifest(name: str) -> Path:
    """``builtin:<name>``: the package's data file as a JSONL manifest in the cache (written once).

    The data stays in its package (installed by the user or ``make setup``); only the converted
    manifest is cached, keyed by the package file's sha256.
    """
    import importlib.resources

    from rarl.api.types import BUILTIN_DATASETS
    from rarl.storage.transfer import default_cache_dir

    spec = BUILTIN_DATASETS[name]
    try:
        source = importlib.resources.files(spec.package).joinpath(spec.file)
        raw = source.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DataError(f"builtin:{name} is read from the {spec.package!r} package: pip install {spec.package} "
                        f"({exc})") from None
    dest = default_cache_dir() / "datasets" / f"{name}-{hashlib.sha256(raw).hexdigest()[:12]}.jsonl"
    if not dest.is_file():
        rows = []
        for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            text, sep, value = line.rpartition("\t")
            if not sep:
                raise DataError(f"builtin:{name}: {spec.file} line {lineno}: expected '<text>\\t<value>'")
            rows.append(json.dumps({"id": f"{name}-{lineno}", "text": text, "target": float(value)}))
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
        os.replace(tmp, dest)
    return dest


def resolve_location(uri: str) -> Path:
    """A local path for a dataset location: a path, file://, s3:// (downloaded once into the cache) or builtin:."""
    from rarl.api.types import BUILTIN_DATASET_PREFIX

    if uri.startswith(BUILTIN_DATASET_PREFIX):
        return builtin_manifest(uri[len(BUILTIN_DATASET_PREFIX):])
    if uri.startswith("s3://"):
        from rarl.errors import StorageError
        from rarl.storage import cached_download

        try:
            return Path(cached_download(uri, settings=_STORAGE.get()))
        except StorageError as exc:
            raise DataError(f"{uri}: {exc}") from None
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif "://" in uri:
        raise DataError(f"{uri}: unsupported location scheme; use a path, file:// or s3://")
    path = Path(uri).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return path


def _resolve(uri: str) -> Path:
    # Looked up at call time so a colleague (or a test) can replace ``resolve_location``.
    return globals()["resolve_location"](uri)


# --------------------------------------------------------------------------- images


def verify_image(path: str | Path) -> None:
    """Raise DataError naming the file when it is missing or not a readable image (cheap: no decode)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: image file not found")
    try:
        with Image.open(p) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{p}: corrupt or unreadable image ({exc})") from None


def open_image(item: Item) -> PILImage.Image:
    """Open an item's image as RGB; DataError naming the file when it is missing or corrupt."""
    from PIL import Image, UnidentifiedImageError

    if item.image is None:
        raise DataError(f"item {item.id!r} has no image")
    try:
        with Image.open(item.image) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{item.image}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{item.image}: corrupt or unreadable image ({exc})") from None


def _check_images(items: list[Item], mode: VerifyMode, skips: _Skips) -> list[Item]:
    """Drop (or fail on) items whose image is missing or corrupt, as ``mode`` asks."""
    if mode == "none":
        return items
    if mode == "auto":
        mode = "full" if sum(1 for it in items if it.image) <= AUTO_VERIFY_LIMIT else "exists"
    kept = []
    for it in items:
        if it.image is None:
            kept.append(it)
            continue
        try:
            if mode == "full":
                verify_image(it.image)
            elif not Path(it.image).is_file():
                raise DataError(f"{it.image}: image file not found")
        except DataError as exc:
            skips.skip(str(exc))
            continue
        kept.append(it)
    return kept


def _in_range(target: float, spec: TargetSpec) -> bool:
    return spec.min <= target <= spec.max


# --------------------------------------------------------------------------- readers

_UTK_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d+)\.(?:jpe?g|png)(?:\.chip\.jpe?g)?$", re.IGNORECASE)


def read_utkface(location: Path, target: TargetSpec, skip_bad_items: bool = False) -> Dataset:
    """UTKFace folder: target = age parsed from ``age_gender_race_datetime.jpg``; other names skipped."""
    if not location.is_dir():
        raise DataError(f"{location}: UTKFace needs a folder of age_gender_race_datetime.jpg images")
    skips = _Skips(skip_bad_items)
    items = []
    for path in sorted(p for p in location.rglob("*") if p.is_file()):
        if path.name.startswith("."):
            continue
        match = _UTK_NAME.match(path.name)
        if match is None:
            skips.skip(f"{path}: name is not age_gender_race_datetime.jpg", force=True)
            continue
        age = float(match.group(1))
        if not _in_range(age, target):
            skips.skip(f"{path}: age {age:g} outside [{target.min:g}, {target.max:g}]", force=True)
            continue
        items.append(Item(id=str(path.relative_to(location)), image=str(path), text=None, target=age))
    return Dataset(items, target, skips.count, skips.reasons)


def read_ava(location: Path, target: TargetSpec, images: Path | None = None, skip_bad_items: bool = False) -> Dataset:
    """AVA.txt (index, image id, 10 vote counts, 2 tags, challenge): target = mean score; image ``<id>.jpg``."""
    txt = location / "AVA.txt" if location.is_dir() else location
    if not txt.is_file():
        raise DataError(f"{txt}: AVA.txt not found")
    image_dir = images if images is not None else txt.parent / "images"
    skips = _Skips(skip_bad_items)
    items = []
    try:
        lines = txt.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{txt}: cannot read ({exc})") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cols = line.split()
        try:
            if len(cols) < 12:
                raise ValueError(f"expected at least 12 columns, got {len(cols)}")
            image_id = cols[1]
            votes = [int(c) for c in cols[2:12]]
            if any(v < 0 for v in votes):
                raise ValueError("negative vote count")
        except ValueError as exc:
            skips.skip(f"{txt} line {lineno}: {exc}")
            continue
        n_votes = sum(votes)
        if n_votes == 0:
            skips.skip(f"{txt} line {lineno}: image {image_id} has no votes", force=True)
            continue
        mean = sum((k + 1) * v for k, v in enumerate(votes)) / n_votes
        value = round(round(mean / target.precision) * target.precision, 10)
        items.append(Item(id=image_id, image=str(image_dir / f"{image_id}.jpg"), text=None, target=value))
    return Dataset(items, target, skips.count, skips.reasons)


def read_coco_rem(
    location: Path,
    target: TargetSpec,
    category: str,
    images: Path | None = None,
    include_zero: bool = True,
    skip_bad_items: bool = False,
) -> Dataset:
    """COCO instances JSON: target = non-crowd instances of ``category`` per image."""
    if location.is_dir():
        candidates = sorted(location.glob("*.json"))
        if len(candidates) != 1:
            raise DataError(f"{location}: expected exactly one COCO instances .json file, found {len(candidates)}")
        location = candidates[0]
    try:
        doc = json.loads(location.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{location}: not a readable COCO JSON ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"{location}: a COCO instances JSON needs 'images', 'annotations' and 'categories' lists")
    names = {str(c.get("name")): c.get("id") for c in doc["categories"] if isinstance(c, dict)}
    lowered = {k.lower(): k for k in names}
    key = lowered.get(category.strip().lower())
    if key is None:
        close = difflib.get_close_matches(category.lower(), list(lowered), n=5, cutoff=0.5)
        hint = [lowered[c] for c in close] or sorted(names)[:20]
        raise DataError(
            f"{location}: unknown category {category!r}; "
            + ("close names: " if close else "categories include: ")
            + ", ".join(hint)
        )
    cat_id = names[key]
    counts: dict[Any, int] = {}
    crowd: set[Any] = set()
    for ann in doc["annotations"]:
        if not isinstance(ann, dict) or ann.get("category_id") != cat_id:
            continue
        if ann.get("iscrowd"):
            crowd.add(ann.get("image_id"))
        else:
            counts[ann.get("image_id")] = counts.get(ann.get("image_id"), 0) + 1
    image_dir = images
    if image_dir is None:
        base = location.parent
        image_dir = base
        first = next((im for im in doc["images"] if isinstance(im, dict) and im.get("file_name")), None)
        if first is not None:
            for cand in (base, base / "images", base.parent / "images"):
                if (cand / str(first["file_name"])).exists():
                    image_dir = cand
                    break
    skips = _Skips(skip_bad_items)
    items = []
    for im in doc["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            skips.skip(f"{location}: image entry without id or file_name: {str(im)[:80]}")
            continue
        image_id = im["id"]
        if image_id in crowd:
            skips.skip(f"{location}: image {image_id} has a crowd annotation of {key!r} (no exact count)", force=True)
            continue
        count = float(counts.get(image_id, 0))
        if count == 0 and not include_zero:
            continue
        if not _in_range(count, target):
            skips.skip(f"{location}: image {image_id} count {count:g} outside [{target.min:g}, {target.max:g}]",
                       force=True)
            continue
        items.append(Item(id=str(image_id), image=str(image_dir / str(im["file_name"])), text=None, target=count))
    return Dataset(items, target, skips.count, skips.reasons)


def read_jsonl(location: Path, target: TargetSpec, modality: str = "image", skip_bad_items: bool = False) -> Dataset:
    """JSONL manifest: ``{"image": path, "target": y}`` or ``{"text": ..., "target": y}`` per line."""
    if location.is_dir():
        raise DataError(f"{location}: a JSONL manifest must be a file, not a folder")
    try:
        lines = location.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{location}: cannot read ({exc})") from None
    skips = _Skips(skip_bad_items)
    items = []
    field_name = "image" if modality == "image" else "text"
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{location} line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            skips.skip(f"{where}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            skips.skip(f"{where}: expected an object with {field_name!r} and 'target'")
            continue
        value = row.get("target")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            skips.skip(f"{where}: 'target' must be a finite number, got {value!r}")
            continue
        if not _in_range(float(value), target):
            skips.skip(f"{where}: target {value} outside [{target.min:g}, {target.max:g}]")
            continue
        content = row.get(field_name)
        if not isinstance(content, str) or not content:
            skips.skip(f"{where}: missing {field_name!r} (modality is {modality})")
            continue
        item_id = str(row.get("id", f"line-{lineno}"))
        if modality == "image":
            image_path = Path(content.removeprefix("file://")).expanduser()
            if not image_path.is_absolute():
                image_path = location.parent / image_path
            items.append(Item(id=item_id, image=str(image_path), text=None, target=float(value)))
        else:
            items.append(Item(id=item_id, image=None, text=content, target=float(value)))
    return Dataset(items, target, skips.count, skips.reasons)


# --------------------------------------------------------------------------- synthetic

_COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (128, 128, 0), (0, 0, 128)]
_FRUITS = ["pear", "plum", "banana", "cherry", "grape", "lemon", "mango"]


def _draw_shapes(k: int, size: int, rng: np.random.Generator) -> PILImage.Image:
    """k non-overlapping circles/squares/triangles on a light canvas (grid fallback when crowded)."""
    from PIL import Image, ImageDraw

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
    lo, hi = math.ceil(target.min), math.floor(target.max)
    if hi < lo:
        raise DataError(f"synthetic targets need an integer in [{target.min}, {target.max}]")
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


# --------------------------------------------------------------------------- entry point


def _read(spec: DatasetSpec, uri: str) -> Dataset:
    target = spec.target
    if spec.format != "jsonl" and spec.modality == "text":
        raise DataError(f"format {spec.format!r} has image items only; use modality 'image'")
    location = _resolve(uri)
    images = _resolve(spec.images) if spec.images else None
    if spec.format == "utkface":
        return read_utkface(location, target, spec.skip_bad_items)
    if spec.format == "ava":
        return read_ava(location, target, images, spec.skip_bad_items)
    if spec.format == "coco-rem":
        assert spec.category is not None
        return read_coco_rem(location, target, spec.category, images, spec.include_zero, spec.skip_bad_items)
    if spec.format == "jsonl":
        return read_jsonl(location, target, spec.modality, spec.skip_bad_items)
    raise DataError(f"unknown dataset format {spec.format!r}")


def _held_out(count: int, fraction: float) -> set[int]:
    """Indices of the eval share: seeded permutation, ceil(fraction * count), at least 1, at most count - 1."""
    if count < 2:
        return set()
    n_eval = min(count - 1, max(1, math.ceil(fraction * count)))
    perm = np.random.default_rng(SPLIT_SEED).permutation(count)
    return {int(i) for i in perm[:n_eval]}


def load_items(
    spec: DatasetSpec,
    split: Split,
    cache_dir: Path | None = None,
    verify: VerifyMode = "auto",
    on_progress: Callable[[str], None] | None = None,
    storage: Any = None,
) -> Dataset:
    """Items of ``split`` as the spec describes them; DataError names what is wrong.

    ``storage`` (the job's ``spec.storage``) reaches s3:// locations; without it the standard AWS
    environment and ``RARL_S3_ENDPOINT`` apply.
    """
    token = _STORAGE.set(storage)
    try:
        return _load_items(spec, split, cache_dir, verify, on_progress)
    finally:
        _STORAGE.reset(token)


def _load_items(
    spec: DatasetSpec,
    split: Split,
    cache_dir: Path | None,
    verify: VerifyMode,
    on_progress: Callable[[str], None] | None,
) -> Dataset:
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if spec.format == "synthetic":
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

    if split == "eval" and spec.eval:
        data = _read(spec, spec.eval)
    else:
        assert spec.train is not None
        data = _read(spec, spec.train)
        if not spec.eval:
            held = _held_out(len(data.items), spec.eval_fraction)
            keep_eval = split == "eval"
            data.items = [it for i, it in enumerate(data.items) if (i in held) == keep_eval]
        if split == "train" and spec.max_items is not None and len(data.items) > spec.max_items:
            perm = np.random.default_rng(SPLIT_SEED + 1).permutation(len(data.items))
            data.items = [data.items[int(i)] for i in perm[: spec.max_items]]
    skips = _Skips(spec.skip_bad_items)
    skips.count, skips.reasons = data.skipped, list(data.skipped_reasons)
    if on_progress:
        on_progress(f"checking {len(data.items)} images")
    data.items = _check_images(data.items, verify, skips)
    data.skipped, data.skipped_reasons, data.split = skips.count, skips.reasons, split
    if not data.items:
        raise DataError(f"{spec.eval if split == 'eval' and spec.eval else spec.train}: no usable items for {split}"
                        + (f" ({data.skipped} skipped, e.g. {data.skipped_reasons[0]})" if data.skipped_reasons else ""))
    return data
