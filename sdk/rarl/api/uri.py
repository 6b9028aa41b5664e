"""The location grammar every package shares: ``s3://bucket/prefix``, ``file:///abs/path``, plain paths.

Model and dataset fields also accept ``builtin:NAME`` (an offline model or a packaged
dataset) and, for models, a hub id. This module is the one parser of that grammar:
the API types validate with it, the storage layer, the trainer's data and model
loaders and the local backend resolve with it. It is pure: nothing here touches the
network or the disk beyond making a path absolute.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rarl.errors import StorageError

BUILTIN_PREFIX = "builtin:"
"""``builtin:NAME``: a model built offline from a config, or a dataset shipped in a package."""

_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class InvalidURI(StorageError, ValueError):
    """A location that breaks the grammar. A ``ValueError`` too, so pydantic reports it as a field error."""


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


def has_scheme(uri: str) -> bool:
    """True for ``scheme://...`` (s3, file or an unsupported one), false for paths, hub ids and builtin:."""
    return "://" in uri


def names_a_path(value: str) -> bool:
    """Whether a model or data location names a local path explicitly (``.``, ``/``, ``~`` or file://).

    Why explicitly: ``Qwen/Qwen2.5-VL-3B-Instruct`` is a hub id, not a relative folder, unless written ``./``.
    """
    return value.startswith((".", "/", "~", "file://"))


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def builtin_name(uri: str) -> str | None:
    """``"builtin:afinn"`` -> ``"afinn"``; None for anything else."""
    return uri[len(BUILTIN_PREFIX):] if uri.startswith(BUILTIN_PREFIX) else None


def parse_uri(uri: str | os.PathLike[str]) -> Location:
    """Parse a storage location (paths made absolute, ``~`` expanded).

    Raises InvalidURI for an empty value, an unsupported scheme, an s3 URI without a
    valid bucket name or with credentials in it, and a relative ``file://`` path.
    """
    if isinstance(uri, os.PathLike):
        return Location("file", path=Path(uri).expanduser().absolute())
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidURI(f"{uri!r}: must be a non-empty location: s3://bucket/prefix, file:///abs/path or a path")
    uri = uri.strip()
    if not has_scheme(uri):
        return Location("file", path=Path(uri).expanduser().absolute())
    scheme, rest = uri.split("://", 1)
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if "@" in bucket:
            raise InvalidURI(f"{uri!r}: credentials must not be written into a URI; use storage.credentialsSecret")
        if not _S3_BUCKET.match(bucket):
            raise InvalidURI(f"{uri!r}: {bucket!r} is not a valid S3 bucket name "
                             "(3-63 characters: lowercase letters, digits, dots and hyphens)")
        return Location("s3", bucket=bucket, key=key.strip("/"))
    if scheme == "file":
        if not rest.startswith("/"):
            raise InvalidURI(f"{uri!r}: file:// locations need an absolute path (file:///abs/path)")
        return Location("file", path=Path(rest))
    raise InvalidURI(f"{uri!r}: scheme {scheme + '://'!r} is not supported; use s3://, file:// or a path")


def local_path(uri: str) -> Path:
    """The path of a ``file://`` URI or a plain path (``~`` expanded, left relative if it was)."""
    if uri.startswith("file://"):
        return parse_uri(uri).path  # type: ignore[return-value]
    if has_scheme(uri):
        parse_uri(uri)  # raises for an unsupported scheme
        raise InvalidURI(f"{uri!r} is not a local location")
    return Path(uri).expanduser()


def join_uri(uri: str, *parts: str) -> str:
    """``join_uri("s3://b/ckpt", "step-3")`` -> ``"s3://b/ckpt/step-3"`` (paths too)."""
    return str(parse_uri(uri).join(*parts))
