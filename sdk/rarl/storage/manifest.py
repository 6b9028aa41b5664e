"""Manifests: what a complete checkpoint or exported model contains.

A manifest is written LAST; its presence is what makes a set of objects
exist. Building, parsing and comparing are pure; hashing files is the only I/O
here and is kept in small helpers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from rarl.errors import StorageError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 8 * 1024 * 1024


# --------------------------------------------------------------------------- path safety


def safe_relpath(path: str) -> str:
    """Return ``path`` normalised if it stays inside its root, else raise StorageError.

    Refused: empty paths, absolute paths (``/x``, ``C:\\x``, ``\\\\host``),
    backslashes, NUL, and any ``..`` component. ``.`` and empty components
    are dropped. This is what stands between a hostile manifest (or S3 key)
    and files outside the destination folder.
    """
    if not isinstance(path, str) or not path:
        raise StorageError(f"unsafe path {path!r} in manifest: empty")
    if "\x00" in path or "\\" in path:
        raise StorageError(f"unsafe path {path!r} in manifest: NUL or backslash")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise StorageError(f"unsafe path {path!r} in manifest: absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise StorageError(f"unsafe path {path!r} in manifest: names no file")
    if any(p == ".." for p in parts):
        raise StorageError(f"unsafe path {path!r} in manifest: '..' leaves the destination")
    return "/".join(parts)


def safe_join(root: Path, rel: str) -> Path:
    """``root / rel`` after checking ``rel`` and that no symlink on the way leads out of ``root``."""
    clean = safe_relpath(rel)
    root_real = Path(os.path.realpath(root))
    target = root_real.joinpath(*PurePosixPath(clean).parts)
    real = Path(os.path.realpath(target))  # follows any symlink already in the destination
    if not _is_within(real, root_real) or real == root_real:
        raise StorageError(f"unsafe path {rel!r}: resolves to {real}, outside {root_real}")
    return target


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class FileEntry:
    """One file: relative '/'-path, size in bytes, lowercase hex sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The record written last. ``extra`` is free-form JSON for callers (metrics, RNG notes...)."""

    files: tuple[FileEntry, ...]
    step: int | None = None
    stage: str | None = None
    config_hash: str | None = None
    created_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> bytes:
        doc = {
            "format_version": self.format_version,
            "step": self.step,
            "stage": self.stage,
            "config_hash": self.config_hash,
            "created_at": self.created_at,
            "files": [asdict(f) for f in self.files],
            "extra": self.extra,
        }
        return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()


def build_manifest(
    files: Iterable[FileEntry],
    *,
    step: int | None = None,
    stage: str | None = None,
    config_hash: str | None = None,
    extra: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> Manifest:
    """A manifest over ``files`` (sorted, paths checked, no duplicates, no manifest.json inside)."""
    entries = sorted(files, key=lambda f: f.path)
    seen: set[str] = set()
    for f in entries:
        if safe_relpath(f.path) != f.path:
            raise StorageError(f"manifest path {f.path!r} is not normalised")
        if f.path in seen:
            raise StorageError(f"manifest lists {f.path!r} twice")
        if f.path == MANIFEST_NAME:
            raise StorageError(f"{MANIFEST_NAME} cannot list itself")
        seen.add(f.path)
    try:
        json.dumps(extra or {})
    except (TypeError, ValueError) as e:
        raise StorageError(f"manifest extra must be JSON-serialisable: {e}") from None
    when = (created_at or datetime.now(timezone.utc)).isoformat()
    return Manifest(tuple(entries), step, stage, config_hash, when, dict(extra or {}))


def parse_manifest(data: bytes | str, source: str = "manifest") -> Manifest:
    """Parse and validate a manifest; every path is checked with :func:`safe_relpath`."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise StorageError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise StorageError(f"{source}: expected a JSON object")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise StorageError(f"{source}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    raw_files = doc.get("files")
    if not isinstance(raw_files, list):
        raise StorageError(f"{source}: 'files' must be a list")
    files = []
    for i, f in enumerate(raw_files):
        if not isinstance(f, dict):
            raise StorageError(f"{source}: files[{i}] must be an object")
        path, size, digest = f.get("path"), f.get("size"), f.get("sha256")
        try:
            clean = safe_relpath(path)  # type: ignore[arg-type]
        except StorageError as e:
            raise StorageError(f"{source}: files[{i}]: {e}") from None
        if clean != path or clean == MANIFEST_NAME:
            raise StorageError(f"{source}: files[{i}]: unsafe or non-normalised path {path!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise StorageError(f"{source}: files[{i}] ({path}): bad size {size!r}")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise StorageError(f"{source}: files[{i}] ({path}): bad sha256 {digest!r}")
        files.append(FileEntry(clean, size, digest))
    if len({f.path for f in files}) != len(files):
        raise StorageError(f"{source}: a path is listed twice")
    step = doc.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        raise StorageError(f"{source}: bad step {step!r}")
    extra = doc.get("extra") or {}
    if not isinstance(extra, dict):
        raise StorageError(f"{source}: 'extra' must be an object")
    return Manifest(
        tuple(files), step, doc.get("stage"), doc.get("config_hash"), str(doc.get("created_at", "")), extra
    )


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Mismatch:
    """A file that does not match its manifest entry."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def compare_entry(expected: FileEntry, size: int | None, sha256: str | None) -> Mismatch | None:
    """Pure check of one file's observed size/hash (None = missing / not computed)."""
    if size is None:
        return Mismatch(expected.path, "missing")
    if size != expected.size:
        return Mismatch(expected.path, f"size {size} != {expected.size} in manifest")
    if sha256 is not None and sha256 != expected.sha256:
        return Mismatch(expected.path, f"sha256 {sha256[:12]}... != {expected.sha256[:12]}... in manifest")
    return None


class ChecksumMismatch(StorageError):
    """Downloaded files differ from their manifest; ``mismatches`` names each file."""

    def __init__(self, source: str, mismatches: list[Mismatch]):
        self.source = source
        self.mismatches = list(mismatches)
        shown = "; ".join(str(m) for m in self.mismatches[:5])
        more = f" (+{len(self.mismatches) - 5} more)" if len(self.mismatches) > 5 else ""
        super().__init__(f"{source}: {len(self.mismatches)} file(s) fail verification: {shown}{more}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _hash_many(paths: list[Path]) -> list[str]:
    """sha256 of several files on a few threads (hashlib releases the GIL on large buffers)."""
    if len(paths) <= 1:
        return [sha256_file(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(paths), max(2, os.cpu_count() or 2), 8)) as pool:
        return list(pool.map(sha256_file, paths))


def scan_tree(root: Path) -> list[FileEntry]:
    """Hash every regular file under ``root`` (following file symlinks; skipping manifest.json at top)."""
    root = Path(root)
    if not root.is_dir():
        raise StorageError(f"{root}: not a directory")
    found: list[tuple[str, Path, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel == MANIFEST_NAME or not p.is_file():
                continue
            found.append((rel, p, p.stat().st_size))
    digests = _hash_many([p for _, p, _ in found])
    return [FileEntry(rel, size, d) for (rel, _, size), d in zip(found, digests, strict=True)]


def verify_tree(manifest: Manifest, root: Path, check_hash: bool = True) -> list[Mismatch]:
    """Compare files under ``root`` with ``manifest``; an empty list means all match."""
    out: list[Mismatch] = []
    to_hash: list[tuple[FileEntry, Path]] = []
    for entry in manifest.files:
        p = safe_join(root, entry.path)
        size = p.stat().st_size if p.is_file() else None
        if size is None or size != entry.size or not check_hash:
            m = compare_entry(entry, size, None)
            if m:
                out.append(m)
        else:
            to_hash.append((entry, p))
    digests = _hash_many([p for _, p in to_hash])
    for (entry, _), digest in zip(to_hash, digests, strict=True):
        m = compare_entry(entry, entry.size, digest)
        if m:
            out.append(m)
    return sorted(out, key=lambda m: m.path)
