"""Fixtures: one real SeaweedFS for the session, a fresh bucket per test, both store kinds."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rarl.api.types import StorageSpec
from tests.support.seaweedfs import SeaweedFS, seaweedfs

BIG = 70 * 1024 * 1024  # > 64 MiB: multipart with 16 MiB parts


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedFS]:
    with seaweedfs() as server:
        yield server


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Isolate every test from the machine's AWS config; credentials of the test server."""
    for k in list(os.environ):
        if k.startswith(("AWS_", "RARL_S3_")):
            monkeypatch.delenv(k, raising=False)
    from tests.support.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("RARL_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RARL_CACHE_DIR", str(tmp_path / "cache"))


def spec_for(server: SeaweedFS, **kw: object) -> StorageSpec:
    return StorageSpec(endpoint=server.endpoint, region=server.region, path_style=True,
                       multipart_chunk_mb=16, max_concurrency=4, **kw)


@pytest.fixture
def spec(s3_server: SeaweedFS) -> StorageSpec:
    return spec_for(s3_server)


@pytest.fixture
def bucket(s3_server: SeaweedFS) -> str:
    return s3_server.create_bucket(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["local", "s3"])
def root_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against a local folder and an S3 prefix."""
    if request.param == "local":
        return str(tmp_path / "store")
    b = request.getfixturevalue("bucket")
    return f"s3://{b}/jobs/demo"


@pytest.fixture
def settings(request: pytest.FixtureRequest, root_uri: str) -> StorageSpec | None:
    return request.getfixturevalue("spec") if root_uri.startswith("s3://") else None


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("big") / "weights.bin"
    with open(p, "wb") as f:
        block = os.urandom(1024 * 1024)
        for i in range(BIG // len(block)):
            f.write(block[:-8] + i.to_bytes(8, "little"))  # distinct blocks: a misplaced part is caught
        f.write(os.urandom(12345))  # not a whole number of parts
    return p


def make_tree(root: Path, big: Path | None = None, seed: int = 0) -> Path:
    """A checkpoint-like folder: nested paths, an empty file, optionally a big (hard-linked) file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model").mkdir(exist_ok=True)
    (root / "model" / "adapter_config.json").write_text(f'{{"r": 16, "seed": {seed}}}')
    (root / "optim" / "shard" / "deep").mkdir(parents=True, exist_ok=True)
    (root / "optim" / "shard" / "deep" / "state.pt").write_bytes(os.urandom(300_000) + bytes([seed % 256]))
    (root / "empty.txt").write_bytes(b"")
    (root / "rng state.bin").write_bytes(seed.to_bytes(4, "little") * 100)
    if big is not None:
        os.link(big, root / "model" / "weights.bin")
    return root


def read_tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (manifest.json aside)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
