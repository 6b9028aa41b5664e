"""The Store interface, the same tests against a local folder and a real S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest

from rarl.api.types import StorageSpec
from rarl.errors import StorageError
from rarl.storage import NotFound, ProgressCounter, download_tree, open_store, upload_tree
from tests.storage.conftest import make_tree, read_tree


def test_small_objects(root_uri: str, settings: StorageSpec | None) -> None:
    store = open_store(root_uri, settings)
    assert not store.exists("a/b.json")
    with pytest.raises(NotFound):
        store.read_bytes("a/b.json")
    store.write_bytes("a/b.json", b'{"x": 1}')
    store.write_bytes("a/c/d", b"")
    assert store.read_bytes("a/b.json") == b'{"x": 1}'
    assert store.exists("a/b.json") and not store.exists("a/b")  # exact keys, not prefixes
    info = store.stat("a/b.json")
    assert info is not None and info.size == 8 and info.etag
    assert [o.key for o in store.list("a")] == ["a/b.json", "a/c/d"]
    assert store.list_dirs("") == ["a"] and store.list_dirs("a") == ["c"]
    store.delete("a/b.json")
    store.delete("a/b.json")  # missing: not an error
    assert not store.exists("a/b.json")
    assert store.delete_prefix("a") == 1
    assert store.list("") == []


def test_tree_round_trip_with_multipart(
    root_uri: str, settings: StorageSpec | None, tmp_path: Path, big_file: Path
) -> None:
    src = make_tree(tmp_path / "src", big=big_file)
    up = ProgressCounter()
    manifest = upload_tree(src, root_uri + "/model-export", progress=up, settings=settings)
    assert manifest is not None
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert up.total == total and up.done == total
    assert {f.path for f in manifest.files} == set(read_tree(src))

    store = open_store(root_uri, settings)
    keys = {o.key: o.size for o in store.list("model-export")}
    assert keys["model-export/empty.txt"] == 0
    assert keys["model-export/model/weights.bin"] == big_file.stat().st_size
    assert "model-export/manifest.json" in keys

    down = ProgressCounter()
    dest = download_tree(root_uri + "/model-export", tmp_path / "dest", progress=down, settings=settings)
    assert read_tree(dest) == read_tree(src)
    assert (dest / "empty.txt").stat().st_size == 0
    assert (dest / "manifest.json").is_file()
    assert down.done == total


def test_tree_without_manifest(root_uri: str, settings: StorageSpec | None, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    assert upload_tree(src, root_uri + "/raw", settings=settings, manifest=False) is None
    store = open_store(root_uri, settings)
    assert not store.exists("raw/manifest.json")
    dest = download_tree(root_uri + "/raw", tmp_path / "dest", settings=settings)
    assert read_tree(dest) == read_tree(src)


def test_put_get_single_file(root_uri: str, settings: StorageSpec | None, tmp_path: Path) -> None:
    f = tmp_path / "one.bin"
    f.write_bytes(b"x" * 1000)
    store = open_store(root_uri, settings)
    seen: list[int] = []
    store.put_file(f, "deep/one.bin", progress=seen.append)
    assert sum(seen) == 1000
    store.get_file("deep/one.bin", tmp_path / "out" / "copy.bin")
    assert (tmp_path / "out" / "copy.bin").read_bytes() == b"x" * 1000
    with pytest.raises(NotFound):
        store.get_file("deep/missing.bin", tmp_path / "out" / "missing.bin")
    assert not (tmp_path / "out" / "missing.bin").exists()


def test_env_fallbacks_for_endpoint(monkeypatch: pytest.MonkeyPatch, s3_server, bucket: str) -> None:
    """No StorageSpec: RARL_S3_ENDPOINT (or AWS_ENDPOINT_URL) and RARL_S3_PATH_STYLE are used."""
    from rarl.storage.s3 import resolve_settings

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("RARL_S3_ENDPOINT", s3_server.endpoint)
    monkeypatch.setenv("RARL_S3_PATH_STYLE", "true")
    s = resolve_settings(None)
    assert (s.endpoint, s.path_style) == (s3_server.endpoint, True)
    store = open_store(f"s3://{bucket}/env")
    store.write_bytes("k", b"v")
    assert store.read_bytes("k") == b"v"
    monkeypatch.delenv("RARL_S3_ENDPOINT")
    assert resolve_settings(None).endpoint == "http://127.0.0.1:1"
    spec = StorageSpec(endpoint="http://example:9000", multipart_chunk_mb=32, max_concurrency=3)
    s = resolve_settings(spec)
    assert (s.endpoint, s.chunk_bytes, s.max_concurrency) == ("http://example:9000", 32 << 20, 3)


def test_refuses_to_delete_whole_root(root_uri: str, settings: StorageSpec | None) -> None:
    store = open_store(root_uri.split("/jobs")[0] if root_uri.startswith("s3") else root_uri, settings)
    with pytest.raises(StorageError):
        store.delete_prefix("")


def test_client_uses_botocore_standard_retries_and_short_timeouts(spec: StorageSpec, bucket: str) -> None:
    store = open_store(f"s3://{bucket}", spec)
    cfg = store.client.meta.config  # type: ignore[attr-defined]
    # RARL_S3_MAX_ATTEMPTS=2 (conftest) is botocore's max_attempts: 2 retries, 3 tries in all
    assert cfg.retries["mode"] == "standard" and cfg.retries["total_max_attempts"] == 3
    assert cfg.connect_timeout <= 3 and cfg.s3 == {"addressing_style": "path"}
    assert cfg.max_pool_connections >= spec.max_concurrency


def test_progress_counter_forwards_total_and_deltas(tmp_path: Path) -> None:
    """The shape a rich progress bar needs: set_total() once, then byte deltas from many threads."""

    class Bar:
        def __init__(self) -> None:
            self.total = 0
            self.done = 0

        def set_total(self, n: int) -> None:
            self.total = n

        def __call__(self, n: int) -> None:
            self.done += n

    bar = Bar()
    src = make_tree(tmp_path / "src")
    upload_tree(src, str(tmp_path / "dst"), progress=ProgressCounter(bar))
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert bar.total == size == bar.done
