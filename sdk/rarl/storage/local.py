"""Local folders (and mounted volumes) behind the Store interface.

Writes go to a temporary name in the same folder and are renamed into place,
so a reader never sees half a file; this is what makes "manifest last"
atomic on a filesystem too.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rarl.errors import StorageError
from rarl.storage.base import NotFound, ObjectInfo, ProgressCallback, Store, rel_key
from rarl.storage.manifest import safe_relpath

TMP_MARK = ".rarl-tmp-"
_CHUNK = 8 * 1024 * 1024


def _copy(src: Path, dst: Path, progress: ProgressCallback | None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f"{TMP_MARK}{uuid.uuid4().hex}-{dst.name}"
    try:
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            while chunk := fi.read(_CHUNK):
                fo.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class LocalStore(Store):
    """A folder. ``max_concurrency`` threads copy trees (helps on network volumes)."""

    def __init__(self, root: Path, uri: str | None = None, max_concurrency: int = 4):
        self.root = Path(root)
        self.uri = uri or str(self.root)
        self.max_concurrency = max_concurrency

    def _path(self, key: str) -> Path:
        key = key.strip("/")
        return self.root / safe_relpath(key) if key else self.root

    def _wrap(self, op: str, key: str, e: OSError) -> StorageError:
        cls = NotFound if isinstance(e, FileNotFoundError) else StorageError
        return cls(f"{op} {self._path(key)} failed: {e.strerror or e}")

    def put_file(self, local: Path, key: str, progress: ProgressCallback | None = None) -> None:
        try:
            _copy(Path(local), self._path(key), progress)
        except OSError as e:
            raise StorageError(f"copy {local} -> {self._path(key)} failed: {e.strerror or e}") from None

    def get_file(self, key: str, local: Path, progress: ProgressCallback | None = None) -> None:
        try:
            _copy(self._path(key), Path(local), progress)
        except OSError as e:
            raise self._wrap("read", key, e) from None

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as e:
            raise self._wrap("read", key, e) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        dst = self._path(key)
        tmp = dst.parent / f"{TMP_MARK}{uuid.uuid4().hex}-{dst.name}"
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dst)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise self._wrap("write", key, e) from None

    def stat(self, key: str) -> ObjectInfo | None:
        p = self._path(key)
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._wrap("stat", key, e) from None
        if not p.is_file():
            return None
        return ObjectInfo(key.strip("/"), st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        base = self._path(prefix)
        out = []
        for dirpath, dirnames, files in os.walk(base):
            dirnames.sort()
            for name in sorted(files):
                if name.startswith(TMP_MARK):
                    continue
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue  # deleted while listing
                key = p.relative_to(self.root).as_posix()
                out.append(ObjectInfo(key, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}"))
        return out

    def list_dirs(self, prefix: str = "") -> list[str]:
        base = self._path(prefix)
        try:
            return sorted(e.name for e in os.scandir(base) if e.is_dir())
        except FileNotFoundError:
            return []
        except OSError as e:
            raise self._wrap("list", prefix, e) from None

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as e:
            raise self._wrap("delete", key, e) from None

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix)
        if base == self.root and not prefix.strip("/"):
            raise StorageError(f"refusing to delete the whole store root {self.root}")
        if not base.exists():
            return 0
        n = sum(len(files) for _, _, files in os.walk(base))
        shutil.rmtree(base, ignore_errors=False)
        return n

    def upload_files(self, pairs: Sequence[tuple[Path, str]], progress: ProgressCallback | None = None) -> None:
        self._parallel([(Path(src), self._path(key)) for src, key in pairs], progress, "copy")

    def download_files(self, pairs: Sequence[tuple[str, Path]], progress: ProgressCallback | None = None) -> None:
        self._parallel([(self._path(key), Path(dst)) for key, dst in pairs], progress, "copy")

    def _parallel(self, jobs: list[tuple[Path, Path]], progress: ProgressCallback | None, op: str) -> None:
        def one(job: tuple[Path, Path]) -> None:
            try:
                _copy(job[0], job[1], progress)
            except OSError as e:
                cls = NotFound if isinstance(e, FileNotFoundError) else StorageError
                raise cls(f"{op} {job[0]} -> {job[1]} failed: {e.strerror or e}") from None

        if len(jobs) <= 1 or self.max_concurrency <= 1:
            for job in jobs:
                one(job)
            return
        with ThreadPoolExecutor(min(self.max_concurrency, len(jobs))) as pool:
            for fut in [pool.submit(one, j) for j in jobs]:
                fut.result()

    def child(self, *parts: str) -> LocalStore:
        key = rel_key(*parts)
        return LocalStore(self._path(key), os.path.join(self.uri, key), self.max_concurrency)
