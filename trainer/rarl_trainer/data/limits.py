"""Bounds on what one data file can make the trainer hold in memory (issue 29, bounded inputs).

Text data files (JSONL manifests, AVA.txt) are read a line at a time, at most ``MAX_LINE_BYTES``
a line, so one huge line cannot exhaust memory. An image whose header declares more than
``MAX_IMAGE_PIXELS`` is refused before it is decoded: a decompression bomb (a small file that
decodes to gigabytes) becomes the item's ``DataError``, which ``skipBadItems`` skips, instead of
Pillow's uncaught ``DecompressionBombError`` ending the trainer. ``PIL.Image.MAX_IMAGE_PIXELS``
is left as it is; this check is the trainer's own.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from rarl.api.types import DEFAULT_MAX_PIXELS
from rarl_trainer.data.items import DataError, Skips

if TYPE_CHECKING:
    from PIL import Image as PILImage

MAX_LINE_BYTES = 1 << 20
"""Longest line (one item, newline excluded) of a data file: 1 MiB; a path or a text and a target need far less."""

IMAGE_PIXEL_FACTOR = 64
MAX_IMAGE_PIXELS = IMAGE_PIXEL_FACTOR * DEFAULT_MAX_PIXELS
"""Largest image opened (width x height): 64 x the default pixel budget (``model.vision.maxPixels``,
1280 x 28 x 28), 64,225,280 pixels, e.g. 8,000 x 8,000; a 48-megapixel photo fits. Fixed, not
the job's own budget: the data are checked before the model (and its processor) is loaded, and
one ceiling keeps that check and ``open_image`` in agreement. Below Pillow's own warning limit."""

_DRAIN_BYTES = 1 << 16  # the rest of an over-long line is read (and dropped) in pieces this size


def read_lines(path: Path, skips: Skips) -> Iterator[tuple[int, str]]:
    """(line number, text without its line break) of each line of ``path``, one line in memory at a time.

    A line over ``MAX_LINE_BYTES`` is a bad item (``skips``: skipped and counted, or a DataError
    naming the file, the line and the limit); so is a line that is not UTF-8.
    """
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        lineno = 0
        while True:
            try:
                raw = f.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                lineno += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n"):  # drop the rest of the line without holding it
                        raw = f.readline(_DRAIN_BYTES)
                    skips.skip(f"{path} line {lineno}: longer than the limit of {MAX_LINE_BYTES:,} bytes a line")
                    continue
            except OSError as exc:
                raise DataError(f"{path} line {lineno + 1}: cannot read ({exc.strerror or exc})") from None
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                skips.skip(f"{path} line {lineno}: not UTF-8 text ({exc.reason} at byte {exc.start})")
                continue
            yield lineno, text.rstrip("\r\n")


def open_bounded(path: str | Path) -> PILImage.Image:
    """``PIL.Image.open`` that refuses an image over ``MAX_IMAGE_PIXELS`` before anything is decoded.

    Pillow's own bomb signals (its warning between 1x and 2x its limit, its error above) become
    the same DataError, naming the file and the limit. Other errors are the caller's to report.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(f"{path}: image over the limit of {MAX_IMAGE_PIXELS:,} pixels ({exc})") from None
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        img.close()
        raise DataError(f"{path}: image of {width} x {height} = {width * height:,} pixels is over the limit of "
                        f"{MAX_IMAGE_PIXELS:,} pixels (a possible decompression bomb)")
    return img
