"""Storage locations: ``s3://bucket/prefix``, ``file:///abs/path`` and plain paths.

Parsing is pure so that the SDK, the operator and the trainer agree on what a
location means without touching the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rarl.errors import StorageError


@dataclass(frozen=True)
class Location:
    """A parsed location. ``scheme`` is ``"s3"`` or ``"file"``.

    For s3, ``bucket`` and ``key`` (the prefix, no leading or trailing slash);
    for file, ``path`` (absolute).
    """

    scheme: str
    bucket: str = ""
    key: str = ""
    path: Path | None = None

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    def __str__(self) -> str:
        if self.is_s3:
            return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"
        return str(self.path)

    def join(self, *parts: str) -> Location:
        """The location of a child (``parts`` are relative, '/'-separated)."""
        rel = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
        if not rel:
            return self
        if self.is_s3:
            key = f"{self.key}/{rel}" if self.key else rel
            return Location("s3", bucket=self.bucket, key=key)
        assert self.path is not None
        return Location("file", path=self.path / rel)


def parse_uri(uri: str | os.PathLike[str]) -> Location:
    """Parse a location; raise StorageError for an unsupported scheme or a bucket-less s3 URI."""
    if isinstance(uri, os.PathLike):
        return Location("file", path=Path(uri).expanduser().absolute())
    if not isinstance(uri, str) or not uri.strip():
        raise StorageError(f"empty storage location {uri!r}")
    uri = uri.strip()
    if "://" not in uri:
        return Location("file", path=Path(uri).expanduser().absolute())
    scheme, rest = uri.split("://", 1)
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise StorageError(f"{uri!r}: an s3 location needs a bucket (s3://bucket/prefix)")
        if "@" in bucket:
            raise StorageError(f"{uri!r}: credentials must not be written into a URI")
        return Location("s3", bucket=bucket, key=key.strip("/"))
    if scheme == "file":
        if not rest.startswith("/"):
            raise StorageError(f"{uri!r}: file:// locations need an absolute path (file:///abs/path)")
        return Location("file", path=Path(rest))
    raise StorageError(f"{uri!r}: scheme {scheme + '://'!r} is not supported; use s3://, file:// or a path")


def join_uri(uri: str, *parts: str) -> str:
    """``join_uri("s3://b/ckpt", "step-3")`` -> ``"s3://b/ckpt/step-3"`` (paths too)."""
    return str(parse_uri(uri).join(*parts))
