"""AVA: ``AVA.txt`` vote counts; the target is the mean vote rounded to the target precision.

Lines without votes are skipped and counted; images are ``<id>.jpg`` in ``images/`` next to
AVA.txt unless ``dataset.images`` names the folder. AVA.txt is read a line at a time
(``limits.read_lines``: a line over ``limits.MAX_LINE_BYTES`` is a bad line).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rarl_trainer.data.items import DataError, Dataset, Item, Skips
from rarl_trainer.data.limits import read_lines

if TYPE_CHECKING:
    from rarl.api.types import TargetSpec


def read_ava(location: Path, target: TargetSpec, images: Path | None = None, skip_bad_items: bool = False) -> Dataset:
    """AVA.txt (index, image id, 10 vote counts, 2 tags, challenge): target = mean score; image ``<id>.jpg``."""
    txt = location / "AVA.txt" if location.is_dir() else location
    if not txt.is_file():
        raise DataError(f"{txt}: AVA.txt not found")
    image_dir = images if images is not None else txt.parent / "images"
    skips = Skips(skip_bad_items)
    items = []
    for lineno, line in read_lines(txt, skips):
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

