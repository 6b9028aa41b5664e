"""Dataset readers on small files in each real format, written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from rarl.api.types import DatasetSpec
from rarl_trainer.data import DataError, Item, load_items, loading, open_image, resolve_location


def _png(path: Path, color: tuple[int, int, int] = (200, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def _jpg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path, format="JPEG")
    return path


def test_utkface_names_and_bad_names(tmp_path: Path) -> None:
    good = ["25_0_2_20170116174525125.jpg", "1_1_0_20161219140623097.jpg.chip.jpg", "80_0_4_20170103.jpg"]
    for name in good:
        _jpg(tmp_path / name)
    for name in ["notes.txt", "39_1_20170116174525125.jpg.chip.jpg", "0_0_0_2017.jpg", "200_0_0_2017.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    spec = DatasetSpec(format="utkface", train=str(tmp_path), eval=str(tmp_path))
    ds = load_items(spec, "train")
    assert sorted(it.target for it in ds.items) == [1.0, 25.0, 80.0]
    assert ds.skipped == 4  # txt, missing race field, age 0 and 200 outside 1..116
    assert any("notes.txt" in r for r in ds.skipped_reasons)
    assert ds.target.unit == "years"


def test_ava_mean_score_and_images_folder(tmp_path: Path) -> None:
    lines = [
        "1 953619 0 1 5 17 38 36 15 6 5 1 1 22",
        "2 953958 10 7 15 33 36 11 5 1 0 1 1 15 21",
        "3 954184 0 0 0 0 0 0 0 0 0 0 0 0 21",  # no votes: skipped
    ]
    (tmp_path / "AVA.txt").write_text("\n".join(lines) + "\n")
    _jpg(tmp_path / "images" / "953619.jpg")
    _jpg(tmp_path / "images" / "953958.jpg")
    spec = DatasetSpec(format="ava", train=str(tmp_path), eval=str(tmp_path / "AVA.txt"))
    ds = load_items(spec, "train")
    votes = [0, 1, 5, 17, 38, 36, 15, 6, 5, 1]
    mean = sum((k + 1) * v for k, v in enumerate(votes)) / sum(votes)
    by_id = {it.id: it for it in ds.items}
    assert by_id["953619"].target == pytest.approx(round(mean, 2))
    assert by_id["953619"].image.endswith("images/953619.jpg")
    assert ds.skipped == 1


def test_ava_bad_line_reports_line_number(tmp_path: Path) -> None:
    (tmp_path / "AVA.txt").write_text("1 953619 0 1 5 17 38 36 15 6 5 1 1 22\n2 x 1 2\n")
    spec = DatasetSpec(format="ava", train=str(tmp_path), eval=str(tmp_path))
    with pytest.raises(DataError, match="line 2"):
        load_items(spec, "train")


def _coco(tmp_path: Path) -> Path:
    doc = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in range(1, 5)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 1, "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 3, "iscrowd": 0},
            {"id": 5, "image_id": 4, "category_id": 1, "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 4, "name": "parking meter"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    for i in range(1, 5):
        _jpg(tmp_path / f"{i:012d}.jpg")
    return path


def test_coco_rem_counts_zero_and_crowd(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    spec = DatasetSpec(format="coco-rem", train=str(path), eval=str(path), category="Person")
    ds = load_items(spec, "train")
    assert {it.id: it.target for it in ds.items} == {"1": 2.0, "2": 1.0, "3": 0.0}
    assert ds.skipped == 1 and "crowd" in ds.skipped_reasons[0]
    no_zero = DatasetSpec(format="coco-rem", train=str(path), eval=str(path), category="person", include_zero=False)
    assert {it.id for it in load_items(no_zero, "train").items} == {"1", "2"}


def test_coco_rem_unknown_category_lists_close_names(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    spec = DatasetSpec(format="coco-rem", train=str(path), eval=str(path), category="persn")
    with pytest.raises(DataError, match=r"unknown category 'persn'.*person"):
        load_items(spec, "train")


def test_jsonl_manifest_relative_paths_and_bad_lines(tmp_path: Path) -> None:
    _png(tmp_path / "imgs" / "a.png")
    _png(tmp_path / "imgs" / "b.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image": "imgs/a.png", "target": 3.5}\n\n{"image": "imgs/b.png", "target": 2, "id": "b"}\n')
    spec = DatasetSpec(format="jsonl", train=str(manifest), eval=str(manifest), target={"min": 0, "max": 10})
    ds = load_items(spec, "train")
    assert [(it.id, it.target) for it in ds.items] == [("line-1", 3.5), ("b", 2.0)]
    assert ds.items[0].image == str(tmp_path / "imgs" / "a.png")
    manifest.write_text('{"image": "imgs/a.png", "target": 3}\n{"image": "imgs/a.png"}\n')
    with pytest.raises(DataError, match=r"m\.jsonl line 2: 'target'"):
        load_items(spec, "train")
    manifest.write_text('{"image": "imgs/a.png", "target": 3}\nnot json\n{"image": "imgs/a.png", "target": 99}\n')
    with pytest.raises(DataError, match=r"line 2: not JSON"):
        load_items(spec, "train")
    skipping = spec.model_copy(update={"skip_bad_items": True})
    ds = load_items(skipping, "train")
    assert len(ds.items) == 1 and ds.skipped == 2 and "line 3" in ds.skipped_reasons[1]


def test_jsonl_image_locations_follow_the_uri_grammar(tmp_path: Path) -> None:
    """An image is a path (relative to the manifest) or a file:// URI; anything else names its line."""
    a = _png(tmp_path / "imgs" / "a.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"image": f"file://{a}", "target": 1}) + "\n")
    spec = DatasetSpec(format="jsonl", train=str(manifest), eval=str(manifest), target={"min": 0, "max": 10})
    assert [it.image for it in load_items(spec, "train").items] == [str(a)]
    for bad, why in [("s3://bkt/a.png", "is not a local location"), ("file://imgs/a.png", "absolute path"),
                     ("gs://bkt/a.png", "not supported")]:
        manifest.write_text(json.dumps({"image": "imgs/a.png", "target": 1}) + "\n"
                            + json.dumps({"image": bad, "target": 2}) + "\n")
        with pytest.raises(DataError, match=rf"m\.jsonl line 2: '{bad}'.*{why}"):
            load_items(spec, "train")
        ds = load_items(spec.model_copy(update={"skip_bad_items": True}), "train")
        assert [it.target for it in ds.items] == [1.0] and ds.skipped == 1


def test_jsonl_text_items(tmp_path: Path) -> None:
    manifest = tmp_path / "t.jsonl"
    manifest.write_text('{"text": "great film", "target": 5}\n{"text": "bad", "target": 1}\n')
    spec = DatasetSpec(format="jsonl", modality="text", train=f"file://{manifest}", eval=str(manifest),
                       target={"min": 1, "max": 5})
    ds = load_items(spec, "eval")
    assert [it.text for it in ds.items] == ["great film", "bad"] and ds.items[0].image is None


def test_corrupt_image_is_named_unless_skipping(tmp_path: Path) -> None:
    _png(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    manifest = tmp_path / "m.jsonl"
    rows = [{"image": "ok.png", "target": 1}, {"image": "broken.png", "target": 2}, {"image": "gone.png", "target": 3}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    spec = DatasetSpec(format="jsonl", train=str(manifest), eval=str(manifest), target={"min": 0, "max": 5})
    with pytest.raises(DataError, match=r"broken\.png"):
        load_items(spec, "train")
    ds = load_items(spec.model_copy(update={"skip_bad_items": True}), "train")
    assert [it.target for it in ds.items] == [1.0]
    assert ds.skipped == 2
    assert any("broken.png" in r for r in ds.skipped_reasons) and any("gone.png" in r for r in ds.skipped_reasons)
    with pytest.raises(DataError, match=r"broken\.png"):
        open_image(Item("x", str(tmp_path / "broken.png"), None, 1.0))
    assert open_image(Item("y", str(tmp_path / "ok.png"), None, 1.0)).size == (8, 8)


def test_held_out_eval_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps({"text": f"t{i}", "target": i % 5}) for i in range(50)))
    spec = DatasetSpec(format="jsonl", modality="text", train=str(manifest), target={"min": 0, "max": 5},
                       eval_fraction=0.2)
    train, ev = load_items(spec, "train"), load_items(spec, "eval")
    assert len(ev.items) == 10 and len(train.items) == 40
    assert not {it.id for it in train.items} & {it.id for it in ev.items}
    assert [it.id for it in load_items(spec, "eval").items] == [it.id for it in ev.items]
    capped = load_items(spec.model_copy(update={"max_items": 7}), "train")
    assert len(capped.items) == 7 and {it.id for it in capped.items} <= {it.id for it in train.items}


def test_synthetic_images_deterministic(tmp_path: Path) -> None:
    spec = DatasetSpec(format="synthetic", synthetic={"trainSize": 12, "evalSize": 4, "seed": 5, "imageSize": 48})
    a = load_items(spec, "train", cache_dir=tmp_path / "a")
    b = load_items(spec, "train", cache_dir=tmp_path / "b")
    assert [it.target for it in a.items] == [it.target for it in b.items]
    assert all(Path(x.image).read_bytes() == Path(y.image).read_bytes() for x, y in zip(a.items, b.items, strict=True))
    assert all(1 <= it.target <= 9 for it in a.items)
    assert Image.open(a.items[0].image).size == (48, 48)
    ev = load_items(spec, "eval", cache_dir=tmp_path / "a")
    assert len(ev.items) == 4 and not {it.image for it in ev.items} & {it.image for it in a.items}
    other = load_items(spec.model_copy(update={"synthetic": spec.synthetic.model_copy(update={"seed": 6})}), "train",
                       cache_dir=tmp_path / "a")
    assert [it.target for it in other.items] != [it.target for it in a.items]


def test_synthetic_text_counts_apples() -> None:
    spec = DatasetSpec(format="synthetic", modality="text", synthetic={"trainSize": 20, "seed": 1})
    items = load_items(spec, "train").items
    assert items == load_items(spec, "train").items
    assert all(it.text.split().count("apple") == it.target for it in items)


def test_locations_and_s3_seam(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_location(f"file://{tmp_path}") == tmp_path
    with pytest.raises(DataError, match="no such file"):
        resolve_location(str(tmp_path / "missing"))
    # load_items resolves locations through loading.resolve_location (s3:// is covered in
    # tests/storage/test_datasets_s3.py).
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"text": "a", "target": 1}\n{"text": "b", "target": 2}\n')
    monkeypatch.setattr(loading, "resolve_location", lambda uri, storage=None: manifest)
    spec = DatasetSpec(format="jsonl", modality="text", train="s3://bucket/m.jsonl", eval="s3://bucket/m.jsonl",
                       target={"min": 0, "max": 5})
    assert len(load_items(spec, "train").items) == 2


def test_image_only_formats_reject_text_modality(tmp_path: Path) -> None:
    """The rule is the API types' now (validate catches it); the reader still refuses a spec built around it."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="image items only"):
        DatasetSpec(format="utkface", train=str(tmp_path), modality="text")
    spec = DatasetSpec(format="utkface", train=str(tmp_path)).model_copy(update={"modality": "text"})
    with pytest.raises(DataError, match="image items only"):
        load_items(spec, "train")
