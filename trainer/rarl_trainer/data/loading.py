"""``load_items(spec, split)``: read a split as the spec describes it.

It reads the split (``spec.eval``, or a held-out share of ``spec.train``), checks images,
honours ``max_items`` and returns a ``Dataset`` with the items, the target spec, and what was
skipped and why. Locations go through ``resolve_location`` with the job's storage settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rarl.api.rules import modality_format_error
from rarl_trainer.data.ava import read_ava
from rarl_trainer.data.coco_rem import read_coco_rem
from rarl_trainer.data.images import VerifyMode, check_images
from rarl_trainer.data.items import DataError, Dataset, Skips, Split
from rarl_trainer.data.jsonl import read_jsonl
from rarl_trainer.data.locations import resolve_location
from rarl_trainer.data.split import cap_train, split_share
from rarl_trainer.data.synthetic import _synthetic_cache, synthetic_split
from rarl_trainer.data.utkface import read_utkface

if TYPE_CHECKING:
    from rarl.api.types import DatasetSpec, StorageSpec


def read_location(spec: DatasetSpec, uri: str, storage: StorageSpec | None = None) -> Dataset:
    """Every item at ``uri`` (and ``spec.images``), read by the reader of ``spec.format``."""
    target = spec.target
    error = modality_format_error(spec.format, spec.modality)  # the spec's own rule (a constructed spec may skip it)
    if error is not None:
        raise DataError(error)
    location = resolve_location(uri, storage)
    images = resolve_location(spec.images, storage) if spec.images else None
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


@contextlib.contextmanager
def _node_lock(folder: Path) -> Iterator[None]:
    """An exclusive flock on ``<folder>.lock``: the ranks of a node write the synthetic images one at a time.

    Every rank loads the data itself (``run_setup.load_data``); the generator writes each PNG
    through one fixed temporary name, so two ranks writing the same cache at once could rename
    each other's half-written file. The first rank writes them, the others find them.
    """
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def load_items(
    spec: DatasetSpec,
    split: Split,
    cache_dir: Path | None = None,
    verify: VerifyMode = "auto",
    on_progress: Callable[[str], None] | None = None,
    storage: StorageSpec | None = None,
) -> Dataset:
    """Items of ``split`` as the spec describes them; DataError names what is wrong.

    ``storage`` (the job's ``spec.storage``) reaches s3:// locations; without it the standard AWS
    environment and ``RARL_S3_ENDPOINT`` apply.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if spec.format == "synthetic":
        with _node_lock(_synthetic_cache(spec, cache_dir)):  # every rank loads at once (run_setup.load_data)
            return synthetic_split(spec, split, cache_dir, on_progress)

    if split == "eval" and spec.eval:
        data = read_location(spec, spec.eval, storage)
    else:
        assert spec.train is not None
        data = read_location(spec, spec.train, storage)
        if not spec.eval:
            data.items = split_share(data.items, split, spec.eval_fraction)
        if split == "train":
            data.items = cap_train(data.items, spec.max_items)
    skips = Skips(spec.skip_bad_items)
    skips.count, skips.reasons = data.skipped, list(data.skipped_reasons)
    if on_progress:
        on_progress(f"checking {len(data.items)} images")
    data.items = check_images(data.items, verify, skips)
    data.skipped, data.skipped_reasons, data.split = skips.count, skips.reasons, split
    if not data.items:
        raise DataError(f"{spec.eval if split == 'eval' and spec.eval else spec.train}: no usable items for {split}"
                        + (f" ({data.skipped} skipped, e.g. {data.skipped_reasons[0]})" if data.skipped_reasons else ""))
    return data
