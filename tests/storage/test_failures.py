"""Failures against a real server: bad credentials, missing bucket, dead endpoint, a crash mid-upload."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rarl.api.types import StorageSpec
from rarl.errors import StorageError
from rarl.storage import AsyncCheckpointUploader, CheckpointStore, open_store
from tests.storage.conftest import make_tree, read_tree, spec_for
from tests.support.seaweedfs import SECRET_KEY, SeaweedFS, seaweedfs


def _one_line_naming(err: BaseException, endpoint: str, bucket: str) -> str:
    msg = str(err)
    assert "\n" not in msg, msg
    assert endpoint in msg and bucket in msg, msg
    assert SECRET_KEY not in msg and "WRONG-SECRET-xyz" not in msg, msg
    return msg


def test_wrong_secret(monkeypatch: pytest.MonkeyPatch, spec: StorageSpec, bucket: str, s3_server: SeaweedFS) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "WRONG-SECRET-xyz")
    with pytest.raises(StorageError) as exc:
        CheckpointStore(f"s3://{bucket}/ck", spec).latest()
    msg = _one_line_naming(exc.value, s3_server.endpoint, bucket)
    assert "access denied" in msg and "SignatureDoesNotMatch" in msg


def test_unknown_access_key(
    monkeypatch: pytest.MonkeyPatch, spec: StorageSpec, bucket: str, s3_server: SeaweedFS, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "WRONG-SECRET-xyz")
    with pytest.raises(StorageError) as exc:
        CheckpointStore(f"s3://{bucket}/ck", spec).save(make_tree(tmp_path / "s"), 1)
    assert "InvalidAccessKeyId" in _one_line_naming(exc.value, s3_server.endpoint, bucket)


def test_no_credentials(monkeypatch: pytest.MonkeyPatch, spec: StorageSpec, bucket: str) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match="no credentials"):
        open_store(f"s3://{bucket}", spec).exists("x")


def test_missing_bucket(spec: StorageSpec, s3_server: SeaweedFS, tmp_path: Path) -> None:
    for op in (
        lambda: CheckpointStore("s3://no-such-bucket-rarl/ck", spec).latest(),
        lambda: open_store("s3://no-such-bucket-rarl/ck", spec).exists("manifest.json"),
        lambda: open_store("s3://no-such-bucket-rarl/ck", spec).read_bytes("manifest.json"),
        lambda: CheckpointStore("s3://no-such-bucket-rarl/ck", spec).save(make_tree(tmp_path / "s"), 1),
    ):
        with pytest.raises(StorageError) as exc:
            op()
        assert "bucket does not exist" in _one_line_naming(exc.value, s3_server.endpoint, "no-such-bucket-rarl")


def test_unreachable_endpoint_fails_fast(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    spec = StorageSpec(endpoint=endpoint, path_style=True)
    t0 = time.monotonic()
    with pytest.raises(StorageError) as exc:
        CheckpointStore("s3://somebucket/ck", spec).save(make_tree(tmp_path / "s"), 1)
    assert time.monotonic() - t0 < 15
    assert "unreachable" in _one_line_naming(exc.value, endpoint, "somebucket")


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[SeaweedFS]:
    """A server of this test's own, to crash and restart without disturbing the others."""
    with seaweedfs(tmp_path / "weed") as server:
        yield server


def _stall_then_kill(server: SeaweedFS) -> tuple[object, threading.Event]:
    """A progress callback that, on its first call, SIGKILLs the server and holds the transfer until it is dead."""
    killed = threading.Event()
    lock = threading.Lock()

    def progress(_delta: int) -> None:
        with lock:
            if not killed.is_set():
                server.kill()
                killed.set()

    return progress, killed


def test_server_crash_mid_upload_then_restart(private_server: SeaweedFS, tmp_path: Path, big_file: Path) -> None:
    spec = spec_for(private_server)
    bucket = private_server.create_bucket("crash")
    ckpts = CheckpointStore(f"s3://{bucket}/job", spec)
    ckpts.save(make_tree(tmp_path / "s1", seed=1), 1)

    progress, killed = _stall_then_kill(private_server)
    t0 = time.monotonic()
    with pytest.raises(StorageError) as exc:
        ckpts.save(make_tree(tmp_path / "s2", big=big_file, seed=2), 2, progress=progress)
    assert killed.is_set() and time.monotonic() - t0 < 30
    msg = _one_line_naming(exc.value, private_server.endpoint, bucket)
    assert "step-2" in msg

    private_server.start()  # same ports, same data
    latest = ckpts.latest()
    assert latest is not None and latest.step == 1
    assert not open_store(f"s3://{bucket}/job", spec).exists("step-2/manifest.json")
    info = ckpts.restore_latest(tmp_path / "r1")
    assert info is not None and info.step == 1 and read_tree(tmp_path / "r1") == read_tree(tmp_path / "s1")

    ckpts.save(make_tree(tmp_path / "s3", seed=3), 3)  # the next checkpoint succeeds
    assert ckpts.latest().step == 3  # type: ignore[union-attr]
    # Whether any object of step-2 reached the server before it died depends on timing (none did in a loaded
    # run): prune deletes step-1 and whatever step-2 left, and nothing but step-3 remains.
    raw = open_store(f"s3://{bucket}/job", spec)
    older = sorted(int(d.split("-")[1]) for d in raw.list_dirs("") if d != "step-3")
    assert older in ([1], [1, 2])
    assert ckpts.prune(1) == older
    assert raw.list_dirs("") == ["step-3"] and [c.step for c in ckpts.list()] == [3]


def test_async_uploader_failure_keeps_previous(private_server: SeaweedFS, tmp_path: Path) -> None:
    spec = spec_for(private_server)
    bucket = private_server.create_bucket("async")
    ckpts = CheckpointStore(f"s3://{bucket}/job", spec)
    up = AsyncCheckpointUploader(ckpts, keep=2)
    up.submit(make_tree(tmp_path / "s1", seed=1), 1, stage="sft")
    assert up.wait(60) is True and up.last_error is None
    assert up.last_completed is not None and up.last_completed.step == 1

    private_server.kill()
    up.submit(make_tree(tmp_path / "s2", seed=2), 2)  # returns at once; fails in the background
    assert up.wait(60, raise_errors=False) is True
    assert isinstance(up.last_error, StorageError) and up.failures == 1
    with pytest.raises(StorageError, match=r"checkpoint upload failed.*step-2"):
        up.wait(1)
    up.wait(1)  # reported once

    private_server.start()
    assert ckpts.latest().step == 1  # type: ignore[union-attr]
    up.submit(make_tree(tmp_path / "s3", seed=3), 3)
    up.close(60)
    assert ckpts.latest().step == 3 and up.last_completed.step == 3  # type: ignore[union-attr]
    assert [c.step for c in ckpts.list()] == [1, 3]  # keep=2 pruned nothing complete; step-2 leftover removed
    assert "step-2" not in open_store(f"s3://{bucket}/job", spec).list_dirs("")


def test_async_uploader_strict_raises_on_submit(private_server: SeaweedFS, tmp_path: Path) -> None:
    spec = spec_for(private_server)
    bucket = private_server.create_bucket("strict")
    up = AsyncCheckpointUploader(CheckpointStore(f"s3://{bucket}/job", spec), strict=True)
    private_server.kill()
    up.submit(make_tree(tmp_path / "s1"), 1)
    with pytest.raises(StorageError, match="step-1"):
        up.submit(make_tree(tmp_path / "s2"), 2)
