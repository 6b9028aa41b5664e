"""Pure parts: URIs, path safety (hypothesis), manifest building/parsing/verification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rarl.api.uri import join_uri, parse_uri
from rarl.errors import StorageError
from rarl.storage import (
    FileEntry,
    build_manifest,
    parse_manifest,
    safe_join,
    safe_relpath,
)
from rarl.storage.manifest import compare_entry, scan_tree, verify_tree

H = "a" * 64


def test_parse_uri_forms(tmp_path: Path) -> None:
    s3 = parse_uri("s3://bkt/a/b/")
    assert (s3.scheme, s3.bucket, s3.key) == ("s3", "bkt", "a/b")
    assert parse_uri("s3://bkt").key == ""
    assert parse_uri("file:///abs/x").path == Path("/abs/x")
    assert parse_uri(str(tmp_path / "p")).path == tmp_path / "p"
    assert parse_uri("rel/dir").path == Path.cwd() / "rel" / "dir"
    assert join_uri("s3://bkt/ckpt", "step-3", "manifest.json") == "s3://bkt/ckpt/step-3/manifest.json"
    assert join_uri("s3://bkt", "x") == "s3://bkt/x"
    for bad in ["gs://b/x", "s3:///x", "file://rel/x", "", "s3://key:secret@bkt/x"]:
        with pytest.raises(StorageError):
            parse_uri(bad)


@pytest.mark.parametrize(
    "path", ["../x", "a/../../x", "/etc/passwd", "a/..", "..", "C:/x", "c:x", "a\\..\\x", "", ".", "./", "a/\x00"]
)
def test_unsafe_paths_refused(path: str) -> None:
    with pytest.raises(StorageError):
        safe_relpath(path)


def test_safe_paths_normalised() -> None:
    assert safe_relpath("a/./b//c") == "a/b/c"
    assert safe_relpath("..a/b..") == "..a/b.."  # dots inside names are fine


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "/", "x..y", "\\", "C:", "~"]), max_size=8).map("".join))
def test_safe_join_never_escapes(tmp_path_factory: pytest.TempPathFactory, path: str) -> None:
    root = tmp_path_factory.getbasetemp() / "hyp-root"
    root.mkdir(exist_ok=True)
    try:
        target = safe_join(root, path)
    except StorageError:
        return
    real_root = Path(os.path.realpath(root))
    assert real_root in Path(os.path.realpath(target)).parents


def test_symlink_in_destination_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(StorageError, match="outside"):
        safe_join(dest, "sub/evil.txt")
    assert safe_join(dest, "ok/file.txt") == Path(os.path.realpath(dest)) / "ok" / "file.txt"


def test_manifest_round_trip_and_validation() -> None:
    m = build_manifest(
        [FileEntry("b/x.bin", 3, H), FileEntry("a.txt", 0, "b" * 64)],
        step=7, stage="sft", config_hash="cafe", extra={"loss": 0.5},
    )
    assert [f.path for f in m.files] == ["a.txt", "b/x.bin"]  # sorted
    back = parse_manifest(m.to_json())
    assert back == m
    doc = json.loads(m.to_json())
    assert set(doc) >= {"format_version", "files", "step", "stage", "config_hash", "created_at", "extra"}

    with pytest.raises(StorageError, match="twice"):
        build_manifest([FileEntry("a", 1, H), FileEntry("a", 1, H)])
    with pytest.raises(StorageError):
        build_manifest([FileEntry("../a", 1, H)])
    with pytest.raises(StorageError, match="JSON"):
        build_manifest([], extra={"x": object()})


@pytest.mark.parametrize(
    "files, match",
    [
        ([{"path": "../../etc/cron.d/x", "size": 1, "sha256": H}], r"\.\."),
        ([{"path": "/etc/passwd", "size": 1, "sha256": H}], "absolute"),
        ([{"path": "a//b", "size": 1, "sha256": H}], "normalised"),
        ([{"path": "a", "size": -1, "sha256": H}], "size"),
        ([{"path": "a", "size": 1, "sha256": "zz"}], "sha256"),
        ("nope", "list"),
    ],
)
def test_hostile_manifests_refused(files: object, match: str) -> None:
    doc = {"format_version": 1, "files": files}
    with pytest.raises(StorageError, match=match):
        parse_manifest(json.dumps(doc).encode(), source="s3://b/m.json")


def test_manifest_version_and_json_errors() -> None:
    with pytest.raises(StorageError, match="format_version"):
        parse_manifest(b'{"format_version": 99, "files": []}')
    with pytest.raises(StorageError, match="JSON"):
        parse_manifest(b"{truncated")


def test_compare_entry_pure() -> None:
    e = FileEntry("w.bin", 10, H)
    assert compare_entry(e, 10, H) is None
    assert compare_entry(e, None, None).problem == "missing"  # type: ignore[union-attr]
    assert "size 9" in compare_entry(e, 9, H).problem  # type: ignore[union-attr]
    assert "sha256" in compare_entry(e, 10, "b" * 64).problem  # type: ignore[union-attr]


def test_scan_and_verify(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"hello")
    (tmp_path / "e").write_bytes(b"")
    m = build_manifest(scan_tree(tmp_path))
    assert {f.path: f.size for f in m.files} == {"d/f": 5, "e": 0}
    assert verify_tree(m, tmp_path) == []
    (tmp_path / "d" / "f").write_bytes(b"HELLO")
    (tmp_path / "e").unlink()
    assert {(x.path, x.problem.split()[0]) for x in verify_tree(m, tmp_path)} == {("d/f", "sha256"), ("e", "missing")}


def test_import_without_torch() -> None:
    code = "import sys, rarl.storage, rarl.storage.checkpoints; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
