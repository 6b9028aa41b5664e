"""COCO-ReM: a COCO instances JSON; the target is the count of non-crowd instances of a category.

An image with a crowd annotation of that category has no exact count: skipped and counted,
as are counts outside [target.min, target.max].
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl_trainer.data.items import DataError, Dataset, Item, Skips, in_range

if TYPE_CHECKING:
    from rarl.api.types import TargetSpec


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
    skips = Skips(skip_bad_items)
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
        if not in_range(count, target):
            skips.skip(f"{location}: image {image_id} count {count:g} outside [{target.min:g}, {target.max:g}]",
                       force=True)
            continue
        items.append(Item(id=str(image_id), image=str(image_dir / str(im["file_name"])), text=None, target=count))
    return Dataset(items, target, skips.count, skips.reasons)

