"""Image checks: ``verify_image`` and ``check_images`` at load time, ``open_image`` when a prompt needs one.

``verify`` modes: "full" opens and verifies every image (PIL ``verify``), "exists" only checks
files exist, "none" skips checks; "auto" is full up to 20,000 images, else exists (then
``open_image`` reports corrupt files lazily, naming them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rarl_trainer.data.items import DataError, Item, Skips

if TYPE_CHECKING:
    from PIL import Image as PILImage

VerifyMode = Literal["auto", "full", "exists", "none"]
AUTO_VERIFY_LIMIT = 20_000


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


def check_images(items: list[Item], mode: VerifyMode, skips: Skips) -> list[Item]:
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

