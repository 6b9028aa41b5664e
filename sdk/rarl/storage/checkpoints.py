"""Atomic checkpoints: ``<uri>/step-<N>/`` files first, ``manifest.json`` last.

A step folder without a manifest does not exist for readers; so a crash, a
preemption or a lost endpoint mid-upload leaves the previous checkpoint as the
newest. Restores verify sizes and sha256 and fall back to the previous
checkpoint when one is damaged. Identical on S3 and local paths.

Trainer use::

    ckpts = CheckpointStore(spec.checkpoint.uri, spec.storage)
    info = ckpts.restore_latest(local_dir)         # None on a fresh start
    up = AsyncCheckpointUploader(ckpts, keep=3)
    ...
    save_state(snapshot_dir)                       # fast, local
    up.submit(snapshot_dir, step=step, stage=stage, config_hash=h)  # returns at once
    ...
    on SIGTERM: save_state(d); up.submit(d, step=...); up.wait(timeout=grace)

A sharded checkpoint written on several nodes: each other node uploads its own
files with ``save_part`` (``step-<N>/parts/<name>.json`` listing them, written
last), and the main node's ``save(..., parts=[names], token=...)`` waits for every
part of this save (the token tells it from an earlier attempt's) before it writes
the manifest over all of them. No node sends its shards to another.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.api.uri import redact_uri
from rarl.errors import StorageError
from rarl.storage.base import NotFound, ProgressCallback, Store
from rarl.storage.manifest import (
    MANIFEST_NAME,
    ChecksumMismatch,
    FileEntry,
    Manifest,
    build_manifest,
    parse_manifest,
    safe_join,
    sha256_file,
)
from rarl.storage.transfer import download_manifested, open_store, upload_manifested

if TYPE_CHECKING:
    from rarl.api.types import StorageSpec

log = logging.getLogger(__name__)
_STEP_DIR = re.compile(r"^step-(\d+)$")
PARTS_DIR = "parts"
"""Under a step folder: ``<name>.json`` of each other node's part of a sharded checkpoint (not in the manifest)."""
PART_POLL_S = 0.5


def step_dir(step: int) -> str:
    return f"step-{int(step)}"


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint: its step, location and manifest."""

    step: int
    uri: str
    manifest: Manifest

    @property
    def stage(self) -> str | None:
        return self.manifest.stage

    @property
    def extra(self) -> dict[str, Any]:
        return self.manifest.extra


class CheckpointStore:
    """Checkpoints of one job under ``uri`` (s3://bucket/prefix or a path)."""

    def __init__(self, uri: str, settings: StorageSpec | None = None, store: Store | None = None):
        self.store = store or open_store(uri, settings)
        self.uri = self.store.uri

    def _steps_present(self) -> list[int]:
        """Every step folder, complete or not, ascending."""
        out = []
        for name in self.store.list_dirs(""):
            m = _STEP_DIR.match(name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def _info(self, step: int) -> CheckpointInfo | None:
        d = step_dir(step)
        try:
            data = self.store.read_bytes(f"{d}/{MANIFEST_NAME}")
        except NotFound:
            return None  # not (yet) complete; transport errors propagate
        try:
            m = parse_manifest(data, source=redact_uri(f"{self.uri.rstrip('/')}/{d}/{MANIFEST_NAME}"))
        except StorageError as e:
            warnings.warn(f"ignoring checkpoint {redact_uri(self.uri)}/{d}: {e}", stacklevel=3)
            log.warning("ignoring checkpoint %s/%s: %s", redact_uri(self.uri), d, e)
            return None
        return CheckpointInfo(step, f"{self.uri.rstrip('/')}/{d}", m)

    def list(self) -> list[CheckpointInfo]:
        """Complete checkpoints (those with a valid manifest), oldest first."""
        out = []
        for step in self._steps_present():
            info = self._info(step)
            if info is not None:
                out.append(info)
        return out

    def latest(self) -> CheckpointInfo | None:
        """The newest complete checkpoint, reading manifests only (newest first, stops at the first)."""
        for step in reversed(self._steps_present()):
            info = self._info(step)
            if info is not None:
                return info
        return None

    def save(
        self,
        local_dir: str | Path,
        step: int,
        *,
        stage: str | None = None,
        config_hash: str | None = None,
        extra: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        parts: Sequence[str] = (),
        token: str | None = None,
        parts_timeout: float = 3600.0,
    ) -> CheckpointInfo:
        """Upload ``local_dir`` as ``step-<step>/`` (files, then manifest). Blocks; see AsyncCheckpointUploader.

        ``parts``: other nodes' parts of this save (``save_part`` with the same ``token``), waited for up
        to ``parts_timeout`` seconds after this node's files and listed in the manifest with them; a part
        that does not arrive in time fails the save (StorageError), which then has no manifest.
        """
        if step < 0:
            raise StorageError(f"checkpoint step must be >= 0, got {step}")
        d = step_dir(step)

        def more_files() -> list[FileEntry]:
            return [entry for name in parts for entry in self._wait_for_part(step, name, token, parts_timeout)]

        m = upload_manifested(
            self.store, Path(local_dir), d, progress=progress, step=step, stage=stage,
            config_hash=config_hash, extra=extra, more_files=more_files if parts else None,
        )
        log.info("checkpoint %s/%s complete (%d files, %d bytes)", redact_uri(self.uri), d, len(m.files), m.total_bytes)
        return CheckpointInfo(step, f"{self.uri.rstrip('/')}/{d}", m)

    def save_part(self, local_dir: str | Path, step: int, *, name: str, token: str | None,
                  paths: Sequence[str], progress: ProgressCallback | None = None) -> list[FileEntry]:
        """Upload ``paths`` (relative to ``local_dir``) into ``step-<step>/``, then ``parts/<name>.json`` listing them.

        The files only become part of a checkpoint when the main node's ``save`` lists them in its manifest.
        A part that fails records its error there (where the store still answers), so that ``save`` fails
        at once instead of waiting out its ``parts_timeout``.
        """
        local_dir, d = Path(local_dir), step_dir(step)
        key = f"{d}/{PARTS_DIR}/{name}.json"
        try:
            missing = sorted(p for p in paths if not safe_join(local_dir, p).is_file())
            if missing:
                raise StorageError(f"missing in {local_dir}: {', '.join(missing)}")
            entries = [FileEntry(p, safe_join(local_dir, p).stat().st_size, sha256_file(safe_join(local_dir, p)))
                       for p in sorted(set(paths))]
            self.store.upload_files([(safe_join(local_dir, e.path), f"{d}/{e.path}") for e in entries], progress)
        except Exception as e:
            why = f"checkpoint part {name} of step {step}: {e}"
            try:
                self.store.write_bytes(key, json.dumps({"token": token, "error": why}).encode())
            except StorageError as record_failed:  # the store itself is gone: save waits out its timeout
                log.warning("could not record the failure of %s: %s", key, record_failed)
            raise StorageError(why) from e
        record = {"token": token, "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in entries]}
        self.store.write_bytes(key, json.dumps(record).encode())
        return entries

    def _wait_for_part(self, step: int, name: str, token: str | None, timeout: float) -> list[FileEntry]:
        """The files of part ``name`` of this save (its token), once its record is there."""
        key, deadline = f"{step_dir(step)}/{PARTS_DIR}/{name}.json", time.monotonic() + timeout
        while True:
            try:
                record = json.loads(self.store.read_bytes(key))
            except NotFound:
                record = None
            if record is not None and record.get("token") == token:
                if "error" in record:
                    raise StorageError(f"checkpoint step {step}: {record['error']}")
                files = [FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in record["files"]]
                build_manifest(files)  # the paths are checked like any manifest's
                return files
            if time.monotonic() > deadline:
                raise StorageError(f"checkpoint step {step}: part {name} (another node's shards) did not arrive "
                                   f"at {redact_uri(self.uri)}/{key} within {timeout:g} s")
            time.sleep(PART_POLL_S)

    def restore(
        self, info: CheckpointInfo, dest: str | Path, progress: ProgressCallback | None = None
    ) -> Path:
        """Download ``info`` into ``dest`` and verify every file; ChecksumMismatch names bad files."""
        dest = Path(dest)
        download_manifested(self.store, info.manifest, dest, step_dir(info.step), progress=progress)
        (dest / MANIFEST_NAME).write_bytes(info.manifest.to_json())
        return dest

    def restore_latest(self, dest: str | Path, progress: ProgressCallback | None = None) -> CheckpointInfo | None:
        """Restore the newest checkpoint that verifies; a damaged one is skipped with a warning.

        Returns None when there is no usable checkpoint (a fresh start). Network
        failures are raised, not skipped: an older checkpoint is only used when a
        newer one is provably damaged.
        """
        dest = Path(dest)
        for step in reversed(self._steps_present()):
            info = self._info(step)
            if info is None:
                continue
            if dest.exists():
                shutil.rmtree(dest)
            try:
                self.restore(info, dest, progress)
                return info
            except ChecksumMismatch as e:
                files = ", ".join(m.path for m in e.mismatches)
                msg = f"checkpoint {redact_uri(info.uri)} is damaged ({files}): {e}; falling back to the previous one"
                warnings.warn(msg, stacklevel=2)
                log.warning(msg)
        if dest.exists():
            shutil.rmtree(dest)
        return None

    def prune(self, keep: int) -> list[int]:
        """Keep the newest ``keep`` complete checkpoints; returns the steps deleted.

        Never deletes the newest complete checkpoint, nor a folder without a
        manifest newer than it (an upload in progress). Incomplete folders older
        than it are leftovers of failed uploads and are deleted. A manifest is
        deleted before its files, so a half-pruned checkpoint is invisible.
        """
        if keep < 1:
            raise ValueError("keep must be >= 1: the newest complete checkpoint is never deleted")
        steps = self._steps_present()
        complete = [s for s in steps if self._info(s) is not None]
        if not complete:
            return []
        newest = complete[-1]
        kept = set(complete[-keep:])
        doomed = [s for s in steps if s < newest and s not in kept]
        for s in doomed:
            self._delete_step(s)
        return doomed

    def _delete_step(self, step: int) -> None:
        d = step_dir(step)
        self.store.delete(f"{d}/{MANIFEST_NAME}")
        self.store.delete_prefix(d)
        log.info("deleted checkpoint %s/%s", redact_uri(self.uri), d)

    def delete_all(self) -> list[int]:
        """Delete every step folder (complete or not), manifests first; returns the steps deleted."""
        steps = self._steps_present()
        for s in steps:
            self._delete_step(s)
        return steps


class AsyncCheckpointUploader:
    """Uploads checkpoints in a background thread so training continues.

    ``submit`` waits for the previous upload, then returns at once. A failed
    upload writes no manifest (so the previous checkpoint stays the newest),
    is logged, kept in ``last_error`` and counted in ``failures``; ``wait()``
    raises it (``raise_errors=False`` to only return). With ``strict=True``
    ``submit`` raises it too, instead of carrying on with the next checkpoint.
    """

    def __init__(
        self,
        store: CheckpointStore,
        keep: int | None = None,
        delete_local: bool = False,
        strict: bool = False,
    ):
        self.store = store
        self.keep = keep
        self.delete_local = delete_local
        self.strict = strict
        self.last_error: BaseException | None = None
        self.last_completed: CheckpointInfo | None = None
        self.failures = 0
        self._thread: threading.Thread | None = None
        self._pending_error: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(
        self,
        local_dir: str | Path,
        step: int,
        *,
        stage: str | None = None,
        config_hash: str | None = None,
        extra: dict[str, Any] | None = None,
        wait_timeout: float | None = None,
        parts: Sequence[str] = (),
        token: str | None = None,
        parts_timeout: float = 3600.0,
    ) -> None:
        """Queue ``local_dir`` as checkpoint ``step`` after the previous upload finished (``parts``: as in ``save``)."""
        kwargs = {"stage": stage, "config_hash": config_hash, "extra": extra, "parts": tuple(parts), "token": token,
                  "parts_timeout": parts_timeout}
        self._start(Path(local_dir), step, kwargs, wait_timeout)

    def submit_part(self, local_dir: str | Path, step: int, *, name: str, token: str | None, paths: Sequence[str],
                    wait_timeout: float | None = None) -> None:
        """Queue another node's part of checkpoint ``step`` (``CheckpointStore.save_part``); nothing is pruned."""
        self._start(Path(local_dir), step, {"part": {"name": name, "token": token, "paths": list(paths)}},
                    wait_timeout)

    def _start(self, local_dir: Path, step: int, kwargs: dict[str, Any], wait_timeout: float | None) -> None:
        if not self.wait(wait_timeout, raise_errors=self.strict):
            raise StorageError(
                f"previous checkpoint upload to {redact_uri(self.store.uri)} still running after {wait_timeout}s"
            )
        self._thread = threading.Thread(
            target=self._run, args=(local_dir, step, kwargs), name=f"rarl-ckpt-upload-{step}", daemon=True
        )
        self._thread.start()

    def _run(self, local_dir: Path, step: int, kwargs: dict[str, Any]) -> None:
        t0 = time.monotonic()
        part = kwargs.get("part")
        try:
            if part is not None:
                self.store.save_part(local_dir, step, **part)
                info = None
            else:
                info = self.store.save(local_dir, step, **kwargs)
        except BaseException as e:  # surfaced through wait()/last_error
            with self._lock:
                self.last_error = e
                self._pending_error = e
                self.failures += 1
            log.error("checkpoint upload step %d to %s failed: %s", step, redact_uri(self.store.uri), e)
            return
        if info is not None:
            with self._lock:
                self.last_completed = info
        log.info("checkpoint step %d%s uploaded in %.1fs", step, " (a part)" if part else "", time.monotonic() - t0)
        if self.keep and info is not None:
            try:
                self.store.prune(self.keep)
            except StorageError as e:
                log.warning("pruning old checkpoints in %s failed: %s", redact_uri(self.store.uri), e)
        if self.delete_local:
            shutil.rmtree(local_dir, ignore_errors=True)

    def wait(self, timeout: float | None = None, raise_errors: bool = True) -> bool:
        """Wait for the running upload. False if still running after ``timeout`` seconds.

        Raises the error of a failed upload not yet reported (once) when ``raise_errors``.
        """
        t = self._thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                return False
        if raise_errors:
            with self._lock:
                err, self._pending_error = self._pending_error, None
            if err is not None:
                if isinstance(err, StorageError):
                    raise StorageError(f"checkpoint upload failed: {err}") from err
                raise err
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Wait for the last upload (e.g. within a SIGTERM grace period); raises its error."""
        return self.wait(timeout)
