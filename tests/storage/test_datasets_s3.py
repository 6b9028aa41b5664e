"""Datasets read from s3:// (real SeaweedFS): downloaded once into the cache, then read like local ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from rarl.api.types import DatasetSpec, StorageSpec
from rarl_trainer.data import DataError, load_items


def utkface_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for age in (3, 25, 61):
        Image.new("RGB", (8, 8), (age, 0, 0)).save(root / f"{age}_0_1_20170109150557335.jpg")
    (root / "not-a-face.jpg").write_bytes(b"x")  # a name that does not parse: skipped and counted
    return root


def test_utkface_folder_from_s3_is_cached_and_read(s3_server, bucket, spec, tmp_path):
    client = s3_server.client()
    for path in utkface_folder(tmp_path / "utk").iterdir():
        client.upload_file(str(path), bucket, f"datasets/utk/{path.name}")
    dataset = DatasetSpec(format="utkface", train=f"s3://{bucket}/datasets/utk", eval=f"s3://{bucket}/datasets/utk")
    first = load_items(dataset, "train", storage=spec)
    assert sorted(it.target for it in first.items) == [3, 25, 61]
    assert first.skipped == 1
    assert all(Path(it.image).exists() and str(tmp_path / "cache") in it.image for it in first.items)
    again = load_items(dataset, "train", storage=spec)
    assert [it.image for it in again.items] == [it.image for it in first.items], "read from the cache"


def test_jsonl_manifest_from_s3(s3_server, bucket, spec):
    rows = [{"text": "apple apple", "target": 2}, {"text": "apple", "target": 1}]
    s3_server.client().put_object(Bucket=bucket, Key="m/train.jsonl",
                                  Body="\n".join(json.dumps(r) for r in rows).encode())
    dataset = DatasetSpec(format="jsonl", modality="text", train=f"s3://{bucket}/m/train.jsonl",
                          eval=f"s3://{bucket}/m/train.jsonl", target={"min": 0, "max": 5})
    assert [it.target for it in load_items(dataset, "eval", storage=spec).items] == [2, 1]


def test_unreachable_s3_dataset_is_a_data_error_naming_the_uri(bucket):
    dataset = DatasetSpec(format="utkface", train=f"s3://{bucket}/nowhere")
    dead = StorageSpec(endpoint="http://127.0.0.1:9", path_style=True, region="us-east-1")
    with pytest.raises(DataError, match=rf"s3://{bucket}/nowhere: .*127\.0\.0\.1:9"):
        load_items(dataset, "train", storage=dead)


def test_missing_s3_dataset_is_a_data_error(s3_server, bucket, spec):
    dataset = DatasetSpec(format="jsonl", modality="text", train=f"s3://{bucket}/missing.jsonl",
                          target={"min": 0, "max": 5})
    with pytest.raises(DataError, match=f"s3://{bucket}/missing.jsonl"):
        load_items(dataset, "train", storage=spec)


