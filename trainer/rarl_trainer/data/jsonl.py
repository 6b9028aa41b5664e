"""A JSONL manifest: ``{"image": path, "target": y}`` or ``{"text": ..., "target": y}`` per line.

A bad line (not JSON, no finite target, a target outside [target.min, target.max], no content,
longer than ``limits.MAX_LINE_BYTES``) is an error naming the line unless ``skip_bad_items``.
The manifest is read a line at a time. Relative image paths are relative to the manifest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from rarl.api.uri import InvalidURI, local_path
from rarl_trainer.data.items import DataError, Dataset, Item, Skips, in_range
from rarl_trainer.data.limits import read_lines

if TYPE_CHECKING:
    from rarl.api.types import TargetSpec


def read_jsonl(location: Path, target: TargetSpec, modality: str = "image", skip_bad_items: bool = False) -> Dataset:
    """JSONL manifest: ``{"image": path, "target": y}`` or ``{"text": ..., "target": y}`` per line."""
    if location.is_dir():
        raise DataError(f"{location}: a JSONL manifest must be a file, not a folder")
    skips = Skips(skip_bad_items)
    items = []
    field_name = "image" if modality == "image" else "text"
    for lineno, line in read_lines(location, skips):
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
        if not in_range(float(value), target):
            skips.skip(f"{where}: target {value} outside [{target.min:g}, {target.max:g}]")
            continue
        content = row.get(field_name)
        if not isinstance(content, str) or not content:
            skips.skip(f"{where}: missing {field_name!r} (modality is {modality})")
            continue
        item_id = str(row.get("id", f"line-{lineno}"))
        if modality == "image":
            try:
                image_path = local_path(content)
            except InvalidURI as exc:
                skips.skip(f"{where}: {exc} (images are paths, relative to the manifest, or file:// URIs)")
                continue
            if not image_path.is_absolute():
                image_path = location.parent / image_path
            items.append(Item(id=item_id, image=str(image_path), text=None, target=float(value)))
        else:
            items.append(Item(id=item_id, image=None, text=content, target=float(value)))
    return Dataset(items, target, skips.count, skips.reasons)

