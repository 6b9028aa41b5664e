"""What the readers produce: items, one split's dataset, the skip bookkeeping, and DataError."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rarl.api.types import TargetSpec

Split = Literal["train", "eval"]
MAX_REASONS = 100
"""``Dataset.skipped_reasons`` keeps the first reasons; ``skipped`` counts all."""


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


class Skips:
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


def in_range(target: float, spec: TargetSpec) -> bool:
    return spec.min <= target <= spec.max
