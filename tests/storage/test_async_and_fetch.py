"""Async uploads (local timing), model fetch with verification and hostile manifests, the cache."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from rarl.api.types import StorageSpec
from rarl.errors import StorageError
from rarl.storage import (
    AsyncCheckpointUploader,
    CheckpointStore,
    ChecksumMismatch,
    cached_download,
    download_tree,
    open_store,
    upload_tree,
)
from rarl.storage.base import Store
from tests.storage.conftest import make_tree, read_tree


class _SlowStore:
    """Wraps a store; uploads block until released, so overlap and ordering are observable."""

    def __init__(self, inner: Store):
        self.inner = inner
        self.uri = inner.uri
        self.release = threading.Event()
        self.started: list[float] = []

    def upload_files(self, pairs, progress=None):  # type: ignore[no-untyped-def]
        self.started.append(time.monotonic())
        assert self.release.wait(30)
        return self.inner.upload_files(pairs, progress)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


def test_async_submit_returns_and_next_waits(tmp_path: Path) -> None:
    slow = _SlowStore(open_store(tmp_path / "ck"))
    ckpts = CheckpointStore("unused", store=slow)  # type: ignore[arg-type]
    up = AsyncCheckpointUploader(ckpts, keep=1, delete_local=True)
    t0 = time.monotonic()
    up.submit(make_tree(tmp_path / "s1", seed=1), 1)
    assert time.monotonic() - t0 < 1.0 and up.busy  # training continues
    assert up.wait(0.2) is False  # a SIGTERM grace period that runs out reports it
    assert ckpts.latest() is None  # nothing visible while uploading

    with pytest.raises(StorageError, match="still running"):
        up.submit(make_tree(tmp_path / "s2", seed=2), 2, wait_timeout=0.2)

    threading.Timer(0.5, slow.release.set).start()
    t1 = time.monotonic()
    up.submit(make_tree(tmp_path / "s2", seed=2), 2)  # waits for step 1 first
    assert time.monotonic() - t1 >= 0.4
    assert up.wait(30) is True and not up.busy
    assert [c.step for c in ckpts.list()] == [2]  # keep=1
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()  # delete_local


def test_download_tree_verifies_against_manifest(root_uri: str, settings: StorageSpec | None, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    upload_tree(src, root_uri + "/m", settings=settings)
    store = open_store(root_uri, settings)
    tampered = tmp_path / "t"
    tampered.write_bytes(b'{"r": 128, "seed": 0}')  # one byte longer
    store.put_file(tampered, "m/model/adapter_config.json")
    store.write_bytes("m/unlisted.bin", b"junk")  # not in the manifest: not fetched
    with pytest.raises(ChecksumMismatch, match=r"model/adapter_config\.json: size"):
        download_tree(root_uri + "/m", tmp_path / "d1", settings=settings)
    with pytest.raises(ChecksumMismatch, match="size"):  # verify=False still checks sizes
        download_tree(root_uri + "/m", tmp_path / "d2", settings=settings, verify=False)
    store.put_file(src / "model" / "adapter_config.json", "m/model/adapter_config.json")
    dest = download_tree(root_uri + "/m", tmp_path / "d3", settings=settings)
    assert read_tree(dest) == read_tree(src) and not (dest / "unlisted.bin").exists()


@pytest.mark.parametrize("evil", ["../escape.txt", "/tmp/rarl-evil-abs.txt", "a/../../escape.txt"])
def test_malicious_manifest_refused(
    root_uri: str, settings: StorageSpec | None, tmp_path: Path, evil: str
) -> None:
    store = open_store(root_uri, settings)
    store.write_bytes("m/escape.txt", b"x")
    doc = {"format_version": 1, "files": [{"path": evil, "size": 1, "sha256": "0" * 64}]}
    store.write_bytes("m/manifest.json", json.dumps(doc).encode())
    with pytest.raises(StorageError, match="unsafe"):
        download_tree(root_uri + "/m", tmp_path / "dest" / "inner", settings=settings)
    assert not (tmp_path / "dest" / "escape.txt").exists()
    assert not Path("/tmp/rarl-evil-abs.txt").exists()
    # as a checkpoint: the step is ignored (with a warning), never restored
    store.write_bytes("step-4/manifest.json", json.dumps(doc).encode())
    with pytest.warns(UserWarning, match="unsafe"):
        assert CheckpointStore(root_uri, settings).restore_latest(tmp_path / "r") is None


def test_object_keys_escaping_dest_refused(tmp_path: Path) -> None:
    """Without a manifest, object keys are checked too (S3 keys may contain '..'; SeaweedFS refuses them,
    AWS does not), so a store is faked to list hostile keys."""
    from rarl.storage.base import ObjectInfo
    from rarl.storage.local import LocalStore

    class Hostile(LocalStore):
        def list(self, prefix: str = "") -> list[ObjectInfo]:
            return [ObjectInfo("m/ok.txt", 1, "e"), ObjectInfo("m/../../evil.txt", 1, "e")]

    (tmp_path / "s" / "m").mkdir(parents=True)
    (tmp_path / "s" / "m" / "ok.txt").write_text("x")
    with pytest.raises(StorageError, match="unsafe"):
        Hostile(tmp_path / "s").download_tree("m", tmp_path / "a" / "b")
    assert not (tmp_path / "a" / "b" / "ok.txt").exists()  # refused before anything is written


def test_symlink_in_destination_refused(root_uri: str, settings: StorageSpec | None, tmp_path: Path) -> None:
    upload_tree(make_tree(tmp_path / "src"), root_uri + "/m", settings=settings)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "optim").symlink_to(outside)
    with pytest.raises(StorageError, match="outside"):
        download_tree(root_uri + "/m", dest, settings=settings)
    assert list(outside.iterdir()) == []


def test_cached_download_file_and_tree(spec: StorageSpec, bucket: str, tmp_path: Path) -> None:
    store = open_store(f"s3://{bucket}", spec)
    store.write_bytes("data/train.jsonl", b'{"a": 1}\n')
    upload_tree(make_tree(tmp_path / "model"), f"s3://{bucket}/models/base", settings=spec)
    cache = tmp_path / "cache"

    calls: list[int] = []
    p1 = cached_download(f"s3://{bucket}/data/train.jsonl", cache, spec, progress=calls.append)
    assert p1.read_bytes() == b'{"a": 1}\n' and p1.name == "train.jsonl" and cache in p1.parents
    p1b = cached_download(f"s3://{bucket}/data/train.jsonl", cache, spec, progress=calls.append)
    assert p1b == p1 and sum(calls) == 9  # second call: a cache hit, nothing transferred

    store.write_bytes("data/train.jsonl", b'{"a": 2}\n')  # new ETag: downloaded again
    p2 = cached_download(f"s3://{bucket}/data/train.jsonl", cache, spec)
    assert p2 != p1 and p2.read_bytes() == b'{"a": 2}\n'

    d1 = cached_download(f"s3://{bucket}/models/base", cache, spec)
    assert read_tree(d1) == read_tree(tmp_path / "model")
    mtime = (d1 / "empty.txt").stat().st_mtime_ns
    store.delete("models/base/empty.txt")  # the cache does not go back to S3 while the manifest is unchanged
    d2 = cached_download(f"s3://{bucket}/models/base", cache, spec)
    assert d2 == d1 and (d2 / "empty.txt").stat().st_mtime_ns == mtime

    with pytest.raises(StorageError, match="no such object"):
        cached_download(f"s3://{bucket}/nothing/here", cache, spec)


def test_cached_download_env_dir_and_local(
    spec: StorageSpec, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RARL_CACHE_DIR", str(tmp_path / "envcache"))
    open_store(f"s3://{bucket}", spec).write_bytes("x.bin", b"1")
    p = cached_download(f"s3://{bucket}/x.bin", settings=spec)
    assert (tmp_path / "envcache") in p.parents
    local = tmp_path / "local.txt"
    local.write_text("hi")
    assert cached_download(str(local)) == local  # local paths are used in place
    with pytest.raises(StorageError):
        cached_download(str(tmp_path / "missing"))
