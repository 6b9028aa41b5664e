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

SECRET_NAME_SUFFIXES = (
    "apikey", "token", "password", "passwd", "secret", "secretkey", "secretaccesskey", "accesskey", "accesskeyid",
    "sessiontoken", "privatekey", "credential", "credentials",
)
"""Endings of names that hold a secret (after ``-``/``_`` are dropped and case folded): ``api-key``,
``AWS_SECRET_ACCESS_KEY``, ``hf_token``. The secret scan of a RARLJob's free-form maps and the
redaction of URI query parameters share them."""
_QUERY_SECRET_SUFFIXES = (*SECRET_NAME_SUFFIXES, "key", "sig", "signature", "auth", "authorization")
"""Query parameters add signatures and bare keys: X-Amz-Signature, X-Amz-Credential, sig (Azure SAS), key."""
REDACTED = "***"
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def secret_name(name: str, *, suffixes: tuple[str, ...] = SECRET_NAME_SUFFIXES) -> bool:
    """Whether a key names a secret: its last segment (after ``/`` and ``.``), without ``-``/``_``, in any case,
    ends with a secret word (``wandb.ai/api-key``, ``example.com/aws_secret_access_key``)."""
    last = re.split(r"[/.]", str(name))[-1]
    norm = last.replace("-", "").replace("_", "").lower()
    return bool(norm) and norm.endswith(suffixes)


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """``user:pw@host/x`` (the part after ``scheme://``) -> ``("user:pw", "host/x")``; no userinfo: ``(None, rest)``.

    Why more than "an ``@`` before the first ``/``": a secret key often holds a ``/`` (``AKIA:abc/def@bucket``);
    an authority with a ``:`` that is no port (bucket names and hosts have none) starts userinfo too.
    """
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    authority = re.split(r"/", head, maxsplit=1)[0]
    if "@" in authority:
        user, _, host = authority.rpartition("@")
        return user, host + rest[len(authority):]
    _, colon, port = authority.partition(":")
    if colon and not port.isdigit() and "@" in head:
        cut = head.rindex("@")
        return rest[:cut], rest[cut + 1:]
    return None, rest


def has_userinfo(uri: str) -> bool:
    """Whether ``scheme://user:password@...`` carries credentials (userinfo) in the URI."""
    return has_scheme(uri) and _split_userinfo(uri.split("://", 1)[1])[0] is not None


def redact_uri(uri: object) -> str:
    """``uri`` fit for a message, a status or a log: userinfo and the values of credential-looking query
    parameters (X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, sig, token, key, password...) become
    ``***``. Every error that quotes a URI quotes it through this."""
    text = str(uri)
    if "://" not in text:
        return text
    scheme, rest = text.split("://", 1)
    user, rest = _split_userinfo(rest)
    head, sep, query = rest.partition("?")
    if sep:
        query, hash_, fragment = query.partition("#")
        params = []
        for param in query.split("&"):
            name, eq, _ = param.partition("=")
            params.append(f"{name}={REDACTED}" if eq and secret_name(name, suffixes=_QUERY_SECRET_SUFFIXES)
                          else param)
        rest = f"{head}?{'&'.join(params)}{hash_}{fragment}"
    return f"{scheme}://{REDACTED + '@' if user is not None else ''}{rest}"


def redact_uris(text: object) -> str:
    """``text`` with every ``scheme://...`` in it passed through ``redact_uri``: for messages built from values
    that may quote a URI (a validator's message, a server's reply)."""
    return _URI_IN_TEXT.sub(lambda m: redact_uri(m.group(0)), str(text))


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
        raise InvalidURI(f"{redact_uri(uri)!r}: must be a non-empty location: s3://bucket/prefix, "
                         "file:///abs/path or a path")
    uri = uri.strip()
    if not has_scheme(uri):
        return Location("file", path=Path(uri).expanduser().absolute())
    scheme, rest = uri.split("://", 1)
    shown = redact_uri(uri)
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if has_userinfo(uri):
            raise InvalidURI(f"{shown!r}: credentials must not be written into a URI; "
                             "use spec.storage.credentialsSecret")
        if not _S3_BUCKET.match(bucket):
            raise InvalidURI(f"{shown!r}: {bucket!r} is not a valid S3 bucket name "
                             "(3-63 characters: lowercase letters, digits, dots and hyphens)")
        return Location("s3", bucket=bucket, key=key.strip("/"))
    if scheme == "file":
        if not rest.startswith("/"):
            raise InvalidURI(f"{shown!r}: file:// locations need an absolute path (file:///abs/path)")
        return Location("file", path=Path(rest))
    raise InvalidURI(f"{shown!r}: scheme {scheme + '://'!r} is not supported; use s3://, file:// or a path")


def local_path(uri: str) -> Path:
    """The path of a ``file://`` URI or a plain path (``~`` expanded, left relative if it was)."""
    if uri.startswith("file://"):
        return parse_uri(uri).path  # type: ignore[return-value]
    if has_scheme(uri):
        parse_uri(uri)  # raises for an unsupported scheme
        raise InvalidURI(f"{redact_uri(uri)!r} is not a local location")
    return Path(uri).expanduser()


def join_uri(uri: str, *parts: str) -> str:
    """``join_uri("s3://b/ckpt", "step-3")`` -> ``"s3://b/ckpt/step-3"`` (paths too)."""
    return str(parse_uri(uri).join(*parts))
