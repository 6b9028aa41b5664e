"""UTKFace: a folder of ``age_gender_race_datetime.jpg`` faces, the target is the age in the name.

Also the aligned ``....jpg.chip.jpg`` names, found recursively; any other file is skipped and
counted (hidden files are ignored), and so are ages outside [target.min, target.max].
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from rarl_trainer.data.items import DataError, Dataset, Item, Skips, in_range

if TYPE_CHECKING:
    from rarl.api.types import TargetSpec

_UTK_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d+)\.(?:jpe?g|png)(?:\.chip\.jpe?g)?$", re.IGNORECASE)


def read_utkface(location: Path, target: TargetSpec, skip_bad_items: bool = False) -> Dataset:
    """UTKFace folder: target = age parsed from ``age_gender_race_datetime.jpg``; other names skipped."""
    if not location.is_dir():
        raise DataError(f"{location}: UTKFace needs a folder of age_gender_race_datetime.jpg images")
    skips = Skips(skip_bad_items)
    items = []
    for path in sorted(p for p in location.rglob("*") if p.is_file()):
        if path.name.startswith("."):
            continue
        match = _UTK_NAME.match(path.name)
        if match is None:
            skips.skip(f"{path}: name is not age_gender_race_datetime.jpg", force=True)
            continue
        age = float(match.group(1))
        if not in_range(age, target):
            skips.skip(f"{path}: age {age:g} outside [{target.min:g}, {target.max:g}]", force=True)
            continue
        items.append(Item(id=str(path.relative_to(location)), image=str(path), text=None, target=age))
    return Dataset(items, target, skips.count, skips.reasons)

