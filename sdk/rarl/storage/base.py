"""The one interface every storage backend implements, and progress reporting.

Keys are '/'-separated and relative to the store's root (the URI it was
opened with), so checkpoint and model code never cares whether the root is a
bucket prefix or a local folder.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rarl.errors import StorageError
from rarl.storage.manifest import safe_join

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes transferred since the previous call (may be
negative when a transfer is retried). Tree operations first call
``progress.set_total(total_bytes)`` if the callable has that method, so a
``rich`` progress bar can be sized."""


class NotFound(StorageError):
    """The object or folder does not exist (the bucket and endpoint do)."""


@dataclass(frozen=True)
class ObjectInfo:
    """An object under the store root: relative key, size, and an ETag (or a local equivalent)."""

    key: str
    size: int
    etag: str


class ProgressCounter:
    """A thread-safe progress sink: ``done``/``total`` in bytes, optional forwarding.

    ``ProgressCounter(lambda n: bar.advance(task, n))`` feeds a rich bar.
    """

    def __init__(self, forward: ProgressCallback | None = None):
        self.done = 0
        self.total: int | None = None
        self._forward = forward
        self._lock = threading.Lock()

    def set_total(self, total: int) -> None:
        self.total = total
        setter = getattr(self._forward, "set_total", None)
        if callable(setter):
            setter(total)

    def __call__(self, delta: int) -> None:
        with self._lock:
            self.done += delta
        if self._forward is not None:
            self._forward(delta)


def announce_total(progress: ProgressCallback | None, total: int) -> None:
    setter = getattr(progress, "set_total", None)
    if callable(setter):
        setter(total)


def rel_key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class Store(ABC):
    """A bucket prefix or a local folder, behind one set of operations."""

    uri: str
    """The location this store was opened with (never contains credentials)."""

    # -- single objects ------------------------------------------------------------------------
    @abstractmethod
    def put_file(self, local: Path, key: str, progress: ProgressCallback | None = None) -> None:
        """Upload one local file to ``key`` (multipart when large)."""

    @abstractmethod
    def get_file(self, key: str, local: Path, progress: ProgressCallback | None = None) -> None:
        """Download ``key`` to ``local`` (parent folders created; written atomically)."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Small objects (manifests). Raises NotFound if missing."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Small objects, written atomically (a reader sees all or nothing)."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size and ETag of ``key``, or None if it does not exist."""

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object under the folder ``prefix`` (recursive), keys relative to the store root."""

    @abstractmethod
    def list_dirs(self, prefix: str = "") -> list[str]:
        """Names of the immediate sub-folders of ``prefix``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object; a missing one is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete the folder ``prefix`` and everything under it; returns objects deleted."""

    # -- many files ----------------------------------------------------------------------------
    @abstractmethod
    def upload_files(self, pairs: Sequence[tuple[Path, str]], progress: ProgressCallback | None = None) -> None:
        """Upload (local file, key) pairs in parallel; the first failure raises StorageError."""

    @abstractmethod
    def download_files(
        self, pairs: Sequence[tuple[str, Path]], progress: ProgressCallback | None = None
    ) -> None:
        """Download (key, local file) pairs in parallel; the first failure raises StorageError."""

    def upload_tree(self, local_dir: Path, prefix: str = "", progress: ProgressCallback | None = None) -> list[str]:
        """Upload every file under ``local_dir`` to ``prefix``; returns the keys written."""
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise StorageError(f"{local_dir}: not a directory")
        pairs = []
        for dirpath, _dirs, files in os.walk(local_dir):
            for name in files:
                p = Path(dirpath) / name
                if p.is_file():
                    pairs.append((p, rel_key(prefix, p.relative_to(local_dir).as_posix())))
        announce_total(progress, sum(p.stat().st_size for p, _ in pairs))
        self.upload_files(pairs, progress)
        return [k for _, k in pairs]

    def download_tree(
        self, prefix: str, local_dir: Path, progress: ProgressCallback | None = None
    ) -> list[Path]:
        """Download everything under ``prefix`` into ``local_dir``; keys that would escape it are refused."""
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        base = prefix.strip("/")
        objects = self.list(base)
        pairs = []
        for obj in objects:
            rel = obj.key[len(base) + 1 :] if base else obj.key
            pairs.append((obj.key, safe_join(local_dir, rel)))
        announce_total(progress, sum(o.size for o in objects))
        self.download_files(pairs, progress)
        return [p for _, p in pairs]
