"""S3 (AWS, MinIO, SeaweedFS, Ceph...) behind the Store interface.

Credentials come only from boto3's standard chain (AWS_* env, shared config,
instance/pod roles), never from URIs or specs, so no secret ever reaches a
message. Retries are botocore's "standard" mode; connect timeouts are short so
an unreachable endpoint fails in seconds. Every botocore failure becomes a
one-line StorageError naming the endpoint and bucket.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.api.uri import redact_uri, redact_uris
from rarl.api.vocabulary import ENV_S3_ENDPOINT, ENV_S3_PATH_STYLE
from rarl.errors import StorageError
from rarl.storage.base import NotFound, ObjectInfo, ProgressCallback, Store, rel_key

if TYPE_CHECKING:
    from rarl.api.types import StorageSpec

log = logging.getLogger(__name__)
MiB = 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class S3Settings:
    """Everything needed to build a client, resolved from a StorageSpec and the environment."""

    endpoint: str | None = None
    region: str | None = None
    path_style: bool = False
    chunk_bytes: int = 64 * MiB
    max_concurrency: int = 8
    max_attempts: int = 2  # botocore's "max_attempts": retries after the first try (3 tries in all)
    connect_timeout: float = 2.0
    read_timeout: float = 60.0

    @property
    def endpoint_label(self) -> str:
        """The endpoint as messages show it: an endpoint from the environment may carry userinfo, shown as ***."""
        return redact_uri(self.endpoint) if self.endpoint else f"AWS S3 ({self.region or 'default region'})"


def resolve_settings(spec: StorageSpec | None = None) -> S3Settings:
    """StorageSpec first; then ``RARL_S3_ENDPOINT``, ``AWS_ENDPOINT_URL``, ``RARL_S3_PATH_STYLE``.

    ``RARL_S3_MAX_ATTEMPTS`` and ``RARL_S3_CONNECT_TIMEOUT`` tune retry behaviour
    (tests and flaky networks).
    """
    env = os.environ
    endpoint = (spec.endpoint if spec else None) or env.get(ENV_S3_ENDPOINT) or env.get("AWS_ENDPOINT_URL")
    region = (spec.region if spec else None) or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region is None and endpoint:
        region = "us-east-1"  # self-hosted servers ignore it, but SigV4 needs one
    path_style = bool(spec and spec.path_style) or env.get(ENV_S3_PATH_STYLE, "").lower() in _TRUE
    return S3Settings(
        endpoint=endpoint,
        region=region,
        path_style=path_style,
        chunk_bytes=(spec.multipart_chunk_mb if spec else 64) * MiB,
        max_concurrency=spec.max_concurrency if spec else 8,
        max_attempts=int(env.get("RARL_S3_MAX_ATTEMPTS", "2")),
        connect_timeout=float(env.get("RARL_S3_CONNECT_TIMEOUT", "2")),
    )


def make_client(settings: S3Settings) -> Any:
    """A boto3 S3 client; its own session, so threads and env changes never share state."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=settings.region,
        retries={"mode": "standard", "max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=max(10, settings.max_concurrency * 2),
        s3={"addressing_style": "path" if settings.path_style else "auto"},
        # only checksum when the operation demands it: SeaweedFS/MinIO versions vary in CRC support
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=settings.endpoint, config=config)


def _transfer_config(settings: S3Settings, op: str = "upload") -> Any:
    """Parts of ``chunk_bytes`` for uploads; downloads use ranges of at most 16 MiB so that even a
    single large file is fetched on all threads (ranged GETs have no part-count limit)."""
    from boto3.s3.transfer import TransferConfig

    chunk = settings.chunk_bytes if op == "upload" else min(settings.chunk_bytes, 16 * MiB)
    return TransferConfig(
        multipart_threshold=chunk,
        multipart_chunksize=chunk,
        max_concurrency=settings.max_concurrency,
        use_threads=True,
    )


_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "403",
    "Forbidden",
    "AuthorizationHeaderMalformed",
}


def describe_error(exc: BaseException) -> tuple[str, type[StorageError]]:
    """A short human reason for a botocore/s3transfer exception, and the StorageError class to raise."""
    from botocore import exceptions as bx

    if isinstance(exc, StorageError):
        return str(exc), type(exc)
    if isinstance(exc, bx.NoCredentialsError):
        return "no credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or storage.credentialsSecret)", StorageError
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionClosedError)):
        return f"endpoint unreachable ({type(exc).__name__})", StorageError
    if isinstance(exc, bx.ReadTimeoutError):
        return "endpoint stopped answering (read timeout)", StorageError
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        if code == "NoSuchBucket":
            return "bucket does not exist", StorageError
        if code in ("NoSuchKey", "404", "NotFound"):
            return "object not found", NotFound
        if code in _AUTH_CODES:
            return (
                (
                    f"access denied ({code}): check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                    "or storage.credentialsSecret) and the bucket policy"
                ),
                StorageError,
            )
        return f"{code}: {err.get('Message', '')}".strip(": "), StorageError
    if isinstance(exc, bx.BotoCoreError):
        return f"{type(exc).__name__}: {exc}", StorageError
    if isinstance(exc, OSError):
        return f"local I/O error: {exc.strerror or exc}", StorageError
    return f"{type(exc).__name__}: {exc}", StorageError


class S3Store(Store):
    """An ``s3://bucket/prefix`` location."""

    def __init__(self, bucket: str, prefix: str, settings: S3Settings, client: Any | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = make_client(self.settings)
                except Exception as e:  # bad region/endpoint strings surface here
                    raise self._error("connect", "", e) from None
            return self._client

    def _key(self, key: str) -> str:
        return rel_key(self.prefix, key)

    def _error(self, op: str, key: str, exc: BaseException) -> StorageError:
        reason, cls = describe_error(exc)
        if cls is NotFound and op in ("list", "stat", "delete", "connect"):
            # a listing never 404s on a healthy S3 bucket: the endpoint is not S3 or the path is wrong
            reason, cls = "HTTP 404 from the endpoint (not an S3 server, or a wrong endpoint path?)", StorageError
        where = f"s3://{self.bucket}/{self._key(key)}" if key or self.prefix else f"s3://{self.bucket}"
        msg = f"S3 {op} {where} failed: {reason} (endpoint {self.settings.endpoint_label}, bucket {self.bucket})"
        return cls(self._scrub(" ".join(msg.split())))

    def _scrub(self, msg: str) -> str:
        """Belt and braces: never let a secret into a message, whatever a server echoes back (a URI too)."""
        msg = redact_uris(msg)
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        token = os.environ.get("AWS_SESSION_TOKEN")
        for s in (secret, token):
            if s and len(s) >= 4:
                msg = msg.replace(s, "***")
        return msg

    def _call(self, op: str, key: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except Exception as e:  # every failure becomes a StorageError
            raise self._error(op, key, e) from None

    # -- single objects ------------------------------------------------------------------------
    def put_file(self, local: Path, key: str, progress: ProgressCallback | None = None) -> None:
        self.upload_files([(Path(local), key)], progress)

    def get_file(self, key: str, local: Path, progress: ProgressCallback | None = None) -> None:
        self.download_files([(key, Path(local))], progress)

    def read_bytes(self, key: str) -> bytes:
        resp = self._call("get", key, self.client.get_object, Key=self._key(key))
        try:
            return resp["Body"].read()
        except Exception as e:  # every failure becomes a StorageError
            raise self._error("get", key, e) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call("put", key, self.client.put_object, Key=self._key(key), Body=data)

    def stat(self, key: str) -> ObjectInfo | None:
        # ListObjectsV2 rather than HEAD: a HEAD on a missing bucket is an anonymous 404,
        # indistinguishable from a missing key; a listing says NoSuchBucket.
        full = self._key(key)
        resp = self._call("stat", key, self.client.list_objects_v2, Prefix=full, MaxKeys=1)
        for obj in resp.get("Contents", []):
            if obj["Key"] == full:
                return ObjectInfo(key.strip("/"), int(obj["Size"]), str(obj.get("ETag", "")).strip('"'))
        return None

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        base = self._key(prefix)
        s3_prefix = base + "/" if base else ""
        root = self.prefix + "/" if self.prefix else ""
        out = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=s3_prefix):
                for obj in page.get("Contents", []):
                    k = obj["Key"]
                    if k.endswith("/"):
                        continue  # folder marker objects
                    out.append(ObjectInfo(k[len(root) :], int(obj["Size"]), str(obj.get("ETag", "")).strip('"')))
        except Exception as e:  # every failure becomes a StorageError
            raise self._error("list", prefix, e) from None
        return out

    def list_dirs(self, prefix: str = "") -> list[str]:
        base = self._key(prefix)
        s3_prefix = base + "/" if base else ""
        out = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=s3_prefix, Delimiter="/"
            )
            for page in pages:
                for cp in page.get("CommonPrefixes", []):
                    out.append(cp["Prefix"][len(s3_prefix) :].rstrip("/"))
        except Exception as e:  # every failure becomes a StorageError
            raise self._error("list", prefix, e) from None
        return sorted(out)

    def delete(self, key: str) -> None:
        self._call("delete", key, self.client.delete_object, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.strip("/") and not self.prefix:
            raise StorageError(f"refusing to delete the whole bucket s3://{self.bucket}")
        root = self.prefix + "/" if self.prefix else ""
        keys = [root + o.key for o in self.list(prefix)]
        self._delete_keys(prefix, keys)
        # Filer-backed servers (SeaweedFS) keep emptied folders as "directories" that still show up
        # as CommonPrefixes; deleting the folder keys, deepest first, removes them (a no-op on AWS).
        base = self._key(prefix)
        folders = {base}
        for k in keys:
            parts = k.split("/")[:-1]
            for i in range(len(base.split("/")), len(parts) + 1):
                folders.add("/".join(parts[:i]))
        for depth in sorted({f.count("/") for f in folders}, reverse=True):
            try:
                self._delete_keys(prefix, [f + "/" for f in folders if f.count("/") == depth])
            except StorageError as e:  # cosmetic: the objects themselves are gone
                log.debug("could not remove folder entries under %s: %s", prefix, e)
        return len(keys)

    def _delete_keys(self, prefix: str, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            resp = self._call("delete", prefix, self.client.delete_objects, Delete={"Objects": batch, "Quiet": True})
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise StorageError(
                    f"S3 delete s3://{self.bucket}/{first.get('Key')} failed: {first.get('Code')} "
                    f"(endpoint {self.settings.endpoint_label}, bucket {self.bucket})"
                )

    # -- many files ----------------------------------------------------------------------------
    def upload_files(self, pairs: Sequence[tuple[Path, str]], progress: ProgressCallback | None = None) -> None:
        self._transfer("upload", [(Path(p), k) for p, k in pairs], progress)

    def download_files(self, pairs: Sequence[tuple[str, Path]], progress: ProgressCallback | None = None) -> None:
        jobs = []
        for k, p in pairs:
            Path(p).parent.mkdir(parents=True, exist_ok=True)
            jobs.append((Path(p), k))
        self._transfer("download", jobs, progress)

    def _transfer(self, op: str, jobs: list[tuple[Path, str]], progress: ProgressCallback | None) -> None:
        """One TransferManager for all files: files and parts share ``max_concurrency`` threads."""
        if not jobs:
            return
        from boto3.s3.transfer import create_transfer_manager
        from s3transfer.subscribers import BaseSubscriber

        class _Progress(BaseSubscriber):  # type: ignore[misc]
            def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
                if progress is not None:
                    progress(bytes_transferred)

        subs = [_Progress()] if progress is not None else []
        client = self.client
        current = ""
        missing: list[str] = []
        try:
            with create_transfer_manager(client, _transfer_config(self.settings, op)) as tm:
                futures = []
                for path, key in jobs:
                    if op == "upload":
                        fut = tm.upload(str(path), self.bucket, self._key(key), subscribers=subs)
                    else:
                        fut = tm.download(self.bucket, self._key(key), str(path), subscribers=subs)
                    futures.append((key, fut))
                for key, fut in futures:
                    current = key
                    try:
                        fut.result()
                    except Exception as e:
                        # a missing object should not cancel the other downloads: the caller
                        # (manifest verification) reports every missing file by name
                        if op == "download" and describe_error(e)[1] is NotFound:
                            missing.append(key)
                            continue
                        raise
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # s3transfer raises many kinds
            raise self._error(op, current, e) from None
        if missing:
            raise self._error(op, missing[0], NotFound(f"{len(missing)} object(s) not found, first: {missing[0]}"))

    def child(self, *parts: str) -> S3Store:
        return S3Store(self.bucket, rel_key(self.prefix, *parts), self.settings, self._client)
