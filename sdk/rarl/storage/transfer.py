"""Whole-tree transfers with manifests, and a local cache for read-only inputs.

``upload_tree`` is how a model is exported (files, then manifest last);
``download_tree`` is how it is fetched (every file verified, nothing written
outside the destination); ``cached_download`` keeps datasets and base models
from being downloaded once per pod start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.api.uri import parse_uri, redact_uri
from rarl.storage.base import NotFound, ProgressCallback, Store, announce_total
from rarl.storage.local import LocalStore
from rarl.storage.manifest import (
    MANIFEST_NAME,
    ChecksumMismatch,
    FileEntry,
    Manifest,
    build_manifest,
    parse_manifest,
    safe_join,
    scan_tree,
    verify_tree,
)

if TYPE_CHECKING:
    from rarl.api.types import StorageSpec


def open_store(uri: str | os.PathLike[str], settings: StorageSpec | None = None) -> Store:
    """The Store for ``s3://bucket/prefix``, ``file:///abs/path`` or a plain path."""
    loc = parse_uri(uri)
    if loc.is_s3:
        from rarl.storage.s3 import S3Store, resolve_settings

        return S3Store(loc.bucket, loc.key, resolve_settings(settings))
    assert loc.path is not None
    return LocalStore(loc.path, str(loc.path), max_concurrency=settings.max_concurrency if settings else 4)


def read_manifest(store: Store, key: str = MANIFEST_NAME) -> Manifest | None:
    """The parsed manifest at ``key``, or None if there is none (a bad one raises StorageError)."""
    try:
        data = store.read_bytes(key)
    except NotFound:
        return None
    return parse_manifest(data, source=redact_uri(f"{store.uri.rstrip('/')}/{key}"))


def upload_manifested(
    store: Store,
    local_dir: Path,
    prefix: str = "",
    *,
    progress: ProgressCallback | None = None,
    step: int | None = None,
    stage: str | None = None,
    config_hash: str | None = None,
    extra: dict[str, Any] | None = None,
    more_files: Callable[[], list[FileEntry]] | None = None,
) -> Manifest:
    """Hash ``local_dir``, upload its files, then write ``manifest.json`` LAST.

    If a manifest already exists at the destination it is deleted first, so a
    half-overwritten folder is never presented as complete. ``more_files``: called
    after the upload, the entries of files others uploaded under ``prefix`` (a
    sharded checkpoint's other nodes), listed in the manifest too.
    """
    local_dir = Path(local_dir)
    manifest = build_manifest(scan_tree(local_dir), step=step, stage=stage, config_hash=config_hash, extra=extra)
    mkey = f"{prefix.strip('/')}/{MANIFEST_NAME}" if prefix.strip("/") else MANIFEST_NAME
    store.delete(mkey)
    pairs = [(local_dir / f.path, f"{prefix.strip('/')}/{f.path}".lstrip("/")) for f in manifest.files]
    announce_total(progress, manifest.total_bytes)
    store.upload_files(pairs, progress)
    if more_files is not None:
        manifest = build_manifest([*manifest.files, *more_files()], step=step, stage=stage,
                                  config_hash=config_hash, extra=extra)
    store.write_bytes(mkey, manifest.to_json())
    return manifest


def download_manifested(
    store: Store,
    manifest: Manifest,
    dest: Path,
    prefix: str = "",
    *,
    progress: ProgressCallback | None = None,
    verify: bool = True,
) -> None:
    """Download the files ``manifest`` lists into ``dest`` and verify sizes (and sha256 if ``verify``).

    Raises ChecksumMismatch naming every bad file; NotFound-listed objects count as "missing".
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = prefix.strip("/")
    pairs = [(f"{base}/{f.path}" if base else f.path, safe_join(dest, f.path)) for f in manifest.files]
    announce_total(progress, manifest.total_bytes)
    try:
        store.download_files(pairs, progress)
    except NotFound:
        pass  # reported per file below, as "missing"
    mismatches = verify_tree(manifest, dest, check_hash=verify)
    if mismatches:
        raise ChecksumMismatch(redact_uri(f"{store.uri.rstrip('/')}/{base}".rstrip("/")), mismatches)


def upload_tree(
    local: str | os.PathLike[str],
    uri: str,
    progress: ProgressCallback | None = None,
    settings: StorageSpec | None = None,
    manifest: bool = True,
    extra: dict[str, Any] | None = None,
    step: int | None = None,
    stage: str | None = None,
    config_hash: str | None = None,
) -> Manifest | None:
    """Upload a folder to ``uri`` (model export). With ``manifest``, ``manifest.json`` is written last."""
    store = open_store(uri, settings)
    if manifest:
        return upload_manifested(store, Path(local), progress=progress, extra=extra, step=step, stage=stage,
                                 config_hash=config_hash)
    store.upload_tree(Path(local), "", progress)
    return None


def download_tree(
    uri: str,
    dest: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    settings: StorageSpec | None = None,
    verify: bool = True,
) -> Path:
    """Fetch a folder. If ``<uri>/manifest.json`` exists, exactly its files are fetched and verified.

    Paths from manifests and object keys are checked: nothing is written
    outside ``dest`` (StorageError otherwise).
    """
    store = open_store(uri, settings)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    m = read_manifest(store)
    if m is None:
        store.download_tree("", dest, progress)
        return dest
    download_manifested(store, m, dest, progress=progress, verify=verify)
    (dest / MANIFEST_NAME).write_bytes(m.to_json())
    return dest


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    return Path(os.environ.get("RARL_CACHE_DIR") or Path.home() / ".cache" / "rarl")


def cached_download(
    uri: str,
    cache_dir: str | os.PathLike[str] | None = None,
    settings: StorageSpec | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """A local path for ``uri``: downloaded once into the cache, keyed by URI and ETag.

    ``uri`` may name one object (returns the file) or a folder (returns a
    folder, verified against its manifest if it has one). Local locations are
    returned as they are. A changed object (new ETag) is downloaded again.
    """
    loc = parse_uri(uri)
    if not loc.is_s3:
        assert loc.path is not None
        if not loc.path.exists():
            raise NotFound(f"{loc.path} does not exist")
        return loc.path
    from rarl.storage.s3 import S3Store, resolve_settings

    spec = resolve_settings(settings)
    parent = S3Store(loc.bucket, loc.key.rpartition("/")[0], spec)
    name = loc.key.rpartition("/")[2]
    info = parent.stat(name) if name else None
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    uri_id = hashlib.sha256(f"{spec.endpoint or ''}|{loc!s}".encode()).hexdigest()[:20]
    if info is not None:
        version = hashlib.sha256(f"{info.etag}:{info.size}".encode()).hexdigest()[:16]
        final = root / uri_id / version / name
        if final.is_file() and final.stat().st_size == info.size:
            return final
        with _locked(final.parent):  # ranks on one node: one downloads, the others wait
            if final.is_file() and final.stat().st_size == info.size:
                return final
            tmp = final.parent / f".tmp-{uuid.uuid4().hex}"
            try:
                parent.get_file(name, tmp / name, progress)
                os.replace(tmp / name, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return final
    store = S3Store(loc.bucket, loc.key, spec, parent._client)
    objects = store.list("")
    if not objects:
        raise NotFound(
            f"S3 get {redact_uri(loc)} failed: no such object or folder (endpoint {spec.endpoint_label}, "
            f"bucket {loc.bucket})"
        )
    m_obj = next((o for o in objects if o.key == MANIFEST_NAME), None)
    h = hashlib.sha256()
    for o in [m_obj] if m_obj else sorted(objects, key=lambda o: o.key):
        h.update(f"{o.key}\0{o.size}\0{o.etag}\n".encode())
    version_dir = root / uri_id / h.hexdigest()[:16]
    final, marker = version_dir / "tree", version_dir / ".complete"
    if marker.is_file() and final.is_dir():
        return final
    with _locked(version_dir):
        if marker.is_file() and final.is_dir():
            return final
        tmp = version_dir / f".tmp-{uuid.uuid4().hex}"
        try:
            m = read_manifest(store)
            if m is not None:
                download_manifested(store, m, tmp, progress=progress)
                (tmp / MANIFEST_NAME).write_bytes(m.to_json())
            else:
                store.download_tree("", tmp, progress)
            if final.exists():  # an interrupted earlier attempt (renamed, never marked)
                shutil.rmtree(final)
            os.replace(tmp, final)
            marker.write_text(json.dumps({"uri": str(loc)}))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``folder/.lock`` (POSIX flock; released if the process dies)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
