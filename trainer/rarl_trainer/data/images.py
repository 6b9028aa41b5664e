"""Image checks: ``verify_image`` and ``check_images`` at load time, ``open_image`` when a prompt needs one.

``verify`` modes: "full" opens and verifies every image (PIL ``verify``), "exists" only checks
files exist, "none" skips checks; "auto" is full up to 20,000 images, else exists (then
``open_image`` reports corrupt files lazily, naming them). Both open images through
``limits.open_bounded``: an image over ``limits.MAX_IMAGE_PIXELS`` is a bad item, never decoded.

``PixelBudget`` is the pixel range a Qwen2/2.5-VL image processor resizes every image into
(``spec.model.vision``, set on the processor by ``models.load_model``). ``open_image`` given one
shrinks a larger image, once, to the very size the processor would resize it to, so a large JPEG
is neither kept nor handed to the processor at full size and the image tokens stay the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from PIL import Image, UnidentifiedImageError

from rarl_trainer.data.items import DataError, Item, Skips
from rarl_trainer.data.limits import open_bounded

if TYPE_CHECKING:
    from PIL import Image as PILImage

VerifyMode = Literal["auto", "full", "exists", "none"]
AUTO_VERIFY_LIMIT = 20_000


def verify_image(path: str | Path) -> None:
    """Raise DataError naming the file when it is missing, not a readable image or over the pixel limit (no decode)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: image file not found")
    try:
        with open_bounded(p) as img:
            img.verify()
    except DataError:
        raise  # over the pixel limit: open_bounded's message (DataError is a ValueError)
    # Pillow's own bomb error can still come from a later frame or tile (GIF, ICO, TIFF) as it loads
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{p}: corrupt or unreadable image ({exc})") from None


@dataclass(frozen=True)
class PixelBudget:
    """The area range (pixels) a Qwen-VL image processor resizes images into, and its grid (patch x merge).

    One image becomes ``area / factor**2`` tokens (28 x 28 pixels a token for Qwen2/2.5-VL).
    """

    min_pixels: int
    max_pixels: int
    factor: int = 28

    def processor_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the processor resizes a ``width`` x ``height`` image to.

        The rule of transformers' ``qwen2_vl`` ``smart_resize`` (5.x): each side rounded to a
        multiple of ``factor``; an area above ``max_pixels`` scaled down (floor), one below
        ``min_pixels`` scaled up (ceil), keeping the aspect ratio.
        """
        f = self.factor
        h_bar = round(height / f) * f
        w_bar = round(width / f) * f
        if h_bar * w_bar > self.max_pixels:
            beta = math.sqrt((height * width) / self.max_pixels)
            h_bar = max(f, math.floor(height / beta / f) * f)
            w_bar = max(f, math.floor(width / beta / f) * f)
        elif h_bar * w_bar < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h_bar = math.ceil(height * beta / f) * f
            w_bar = math.ceil(width * beta / f) * f
        return w_bar, h_bar

    def tokens(self, width: int, height: int) -> int:
        """Image tokens of a ``width`` x ``height`` image (one per factor x factor cell)."""
        w, h = self.processor_size(width, height)
        return (w // self.factor) * (h // self.factor)

    def reduced_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The size to shrink an image to before the processor, or None to hand it over as it is.

        Only shrinking, and only to a size the processor then keeps as it is (a fixed point of
        ``processor_size``): the processor sees the grid it would have computed from the full image.
        """
        target = self.processor_size(width, height)
        if target[0] > width or target[1] > height or target == (width, height):
            return None
        if self.processor_size(*target) != target:
            return None
        return target


def open_image(item: Item, budget: PixelBudget | None = None) -> PILImage.Image:
    """Open an item's image as RGB; DataError naming the file when it is missing, corrupt or over the pixel limit.

    With a ``budget``, an image the processor would shrink is shrunk here instead, to the same size:
    JPEGs are decoded at a reduced scale first (PIL ``draft``: 1/2, 1/4 or 1/8, never below the
    target), then resized (bicubic, the Qwen-VL processors' resample).
    """
    if item.image is None:
        raise DataError(f"item {item.id!r} has no image")
    try:
        with open_bounded(item.image) as img:
            target = budget.reduced_size(*img.size) if budget is not None else None
            if target is None:
                return img.convert("RGB")
            img.draft("RGB", target)  # a no-op for formats other than JPEG
            return img.convert("RGB").resize(target, Image.Resampling.BICUBIC)
    except FileNotFoundError:
        raise DataError(f"{item.image}: image file not found") from None
    except DataError:
        raise  # over the pixel limit: open_bounded's message (DataError is a ValueError)
    # Pillow's own bomb error can still come from a later frame or tile (GIF, ICO, TIFF) as it loads
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
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

