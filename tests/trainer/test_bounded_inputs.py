"""Issue 29, bounded inputs: one data file cannot make the trainer exhaust its memory or crash.

An image whose header declares more pixels than the ceiling (a decompression bomb) is a bad item:
skipped with ``skipBadItems``, a DataError naming the file and the limit without it, never decoded
and never Pillow's uncaught ``DecompressionBombError``. JSONL manifests and AVA.txt are read a line
at a time; a line over 1 MiB is a bad line named by file, line number and limit. The bombs here are
1 x 1 PNGs whose IHDR declares a huge size: a few bytes on disk, nothing decoded.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from rarl.api.catalogue import BUILTIN_DATASETS
from rarl.api.types import DEFAULT_MAX_PIXELS, DatasetSpec
from rarl_trainer.data import DataError, Item, load_items, open_image

# The documented limits (rarl_trainer.data.limits): what the messages must name.
LINE_LIMIT = 1 << 20  # bytes a line, 1,048,576
PIXEL_LIMIT = 64 * DEFAULT_MAX_PIXELS  # pixels an image, 64,225,280


def _declared_png(path: Path, width: int, height: int) -> Path:
    """A valid 1 x 1 PNG whose header claims ``width`` x ``height`` (CRC fixed, so PIL's verify passes)."""
    buf = io.BytesIO()
    Image.new("1", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _png(path: Path) -> Path:
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    return path


def _image_spec(manifest: Path, **update) -> DatasetSpec:
    spec = DatasetSpec(format="jsonl", train=str(manifest), eval=str(manifest), target={"min": 0, "max": 5})
    return spec.model_copy(update=update)


def _text_spec(manifest: Path, **update) -> DatasetSpec:
    spec = DatasetSpec(format="jsonl", modality="text", train=str(manifest), eval=str(manifest),
                       target={"min": 0, "max": 5})
    return spec.model_copy(update=update)


# 9000^2 is over the ceiling but under Pillow's own limit (no Pillow signal at all), 10000^2 trips Pillow's
# DecompressionBombWarning (1x-2x its limit), 20000^2 its DecompressionBombError (the crash of the finding).
BOMB_SIDES = [9000, 10000, 20000]


@pytest.mark.parametrize("side", BOMB_SIDES)
def test_bomb_is_skipped_with_skip_bad_items_and_named_without(tmp_path: Path, side: int, recwarn) -> None:
    """Issue 29, bounded inputs: a decompression bomb is the item's data error, not a trainer crash.

    Guards the bug where Pillow's DecompressionBombError escaped the loader (exit 1, retried
    maxRestarts times, skipBadItems or not) and bombs under Pillow's hard limit passed the check.
    An image right at the ceiling (8,000 x 8,000, a 64-megapixel photo) is still kept.
    """
    _png(tmp_path / "ok.png")
    _declared_png(tmp_path / "at-ceiling.png", 8000, 8000)
    _declared_png(tmp_path / "bomb.png", side, side)
    manifest = tmp_path / "m.jsonl"
    rows = [{"image": "ok.png", "target": 1}, {"image": "at-ceiling.png", "target": 2},
            {"image": "bomb.png", "target": 3}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

    with pytest.raises(DataError, match=rf"bomb\.png: .*over the limit of {PIXEL_LIMIT:,} pixels"):
        load_items(_image_spec(manifest), "train", verify="full")

    ds = load_items(_image_spec(manifest, skip_bad_items=True), "train", verify="full")
    assert sorted(it.target for it in ds.items) == [1.0, 2.0]
    assert ds.skipped == 1
    assert "bomb.png" in ds.skipped_reasons[0] and f"{PIXEL_LIMIT:,} pixels" in ds.skipped_reasons[0]
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


@pytest.mark.parametrize("side", [9000, 20000])
def test_open_image_refuses_a_bomb_before_decoding(tmp_path: Path, side: int) -> None:
    """Issue 29, bounded inputs: the lazy path (verify "exists"/"none", over 20,000 images) refuses a bomb too.

    Guards the bug where open_image decoded (or crashed on) whatever size a header declared.
    """
    bomb = _declared_png(tmp_path / "bomb.png", side, side)
    with pytest.raises(DataError, match=rf"bomb\.png: .*over the limit of {PIXEL_LIMIT:,} pixels"):
        open_image(Item("b", str(bomb), None, 1.0))
    assert open_image(Item("ok", str(_png(tmp_path / "ok.png")), None, 1.0)).size == (8, 8)


def test_overlong_jsonl_line_is_named_with_file_line_and_limit(tmp_path: Path) -> None:
    """Issue 29, bounded inputs: a manifest line over 1 MiB is a bad line named by file:line and the limit.

    Guards the bug where a manifest was read whole with no line cap. With skipBadItems the line is
    skipped and the lines after it keep their numbers; a line of exactly 1 MiB still loads.
    """
    def line(text: str, target: int, size: int | None = None) -> str:
        row = json.dumps({"text": text, "target": target})
        if size is not None:
            row = json.dumps({"text": text + "x" * (size - len(row)), "target": target})
            assert len(row.encode()) == size
        return row + "\n"

    manifest = tmp_path / "t.jsonl"
    manifest.write_text(line("first", 1) + line("long", 2, LINE_LIMIT + 1) + line("third", 3)
                        + line("out of range", 9) + line("exact", 4, LINE_LIMIT))
    with pytest.raises(DataError, match=rf"t\.jsonl line 2: .*limit of {LINE_LIMIT:,} bytes"):
        load_items(_text_spec(manifest), "train")

    ds = load_items(_text_spec(manifest, skip_bad_items=True), "train")
    assert [it.target for it in ds.items] == [1.0, 3.0, 4.0]
    assert len(ds.items[2].text) > LINE_LIMIT - 100  # the line of exactly the limit
    assert ds.skipped == 2
    assert "t.jsonl line 2" in ds.skipped_reasons[0] and "t.jsonl line 4" in ds.skipped_reasons[1]


def test_non_utf8_jsonl_line_is_named_by_its_line(tmp_path: Path) -> None:
    """Issue 29, bounded inputs: reading line by line, a line that is not UTF-8 is named by file:line.

    Guards the whole-file read that reported only "cannot read" for the file and could not skip the line.
    """
    manifest = tmp_path / "t.jsonl"
    manifest.write_bytes(b'{"text": "a", "target": 1}\n{"text": "\xff\xfe", "target": 2}\n{"text": "c", "target": 3}\n')
    with pytest.raises(DataError, match=r"t\.jsonl line 2: not UTF-8"):
        load_items(_text_spec(manifest), "train")
    ds = load_items(_text_spec(manifest, skip_bad_items=True), "train")
    assert [it.text for it in ds.items] == ["a", "c"] and ds.skipped == 1


def test_overlong_ava_line_is_named_with_file_line_and_limit(tmp_path: Path) -> None:
    """Issue 29, bounded inputs: AVA.txt is read line by line with the same 1 MiB cap, named by file:line."""
    good = "1 953619 0 1 5 17 38 36 15 6 5 1 1 22"
    padded = "2 953958 10 7 15 33 36 11 5 1 0 1 1 15 21" + " " * LINE_LIMIT
    (tmp_path / "AVA.txt").write_text(f"{good}\n{padded}\n")
    spec = DatasetSpec(format="ava", train=str(tmp_path), eval=str(tmp_path))
    with pytest.raises(DataError, match=rf"AVA\.txt line 2: .*limit of {LINE_LIMIT:,} bytes"):
        load_items(spec, "train", verify="none")
    ds = load_items(spec.model_copy(update={"skip_bad_items": True}), "train", verify="none")
    assert [it.id for it in ds.items] == ["953619"] and ds.skipped == 1


def test_limits_are_the_documented_ones_and_packaged_data_fit() -> None:
    """Issue 29, bounded inputs: the limits are 1 MiB a line and 64 x the default pixel budget, and every
    packaged (builtin:) data set still loads under them, each line far below the cap."""
    from rarl_trainer.data import limits
    from rarl_trainer.data.locations import builtin_manifest

    assert limits.MAX_LINE_BYTES == LINE_LIMIT and limits.MAX_IMAGE_PIXELS == PIXEL_LIMIT
    assert PIXEL_LIMIT <= Image.MAX_IMAGE_PIXELS  # Pillow's warning limit is never the one that decides
    for name, builtin in BUILTIN_DATASETS.items():
        pytest.importorskip(builtin.package)
        manifest = builtin_manifest(name)
        assert max(len(raw) for raw in manifest.read_bytes().splitlines()) < LINE_LIMIT // 100
        spec = DatasetSpec(format="jsonl", modality=builtin.modality, train=f"builtin:{name}")
        ds = load_items(spec, "train")
        assert len(ds.items) > 100 and ds.skipped == 0
