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
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.errors import StorageError
from rarl.storage.base import NotFound, ProgressCallback, Store
from rarl.storage.manifest import MANIFEST_NAME, ChecksumMismatch, Manifest, parse_manifest
from rarl.storage.transfer import download_manifested, open_store, upload_manifested

if TYPE_CHECKING:
    from rarl.api.types import StorageSpec

log = logging.getLogger(__name__)
_STEP_DIR = re.compile(r"^step-(\d+)$")


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
            m = parse_manifest(data, source=f"{self.uri.rstrip('/')}/{d}/{MANIFEST_NAME}")
        except StorageError as e:
            warnings.warn(f"ignoring checkpoint {self.uri}/{d}: {e}", stacklevel=3)
            log.warning("ignoring checkpoint %s/%s: %s", self.uri, d, e)
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
    ) -> CheckpointInfo:
        """Upload ``local_dir`` as ``step-<step>/`` (files, then manifest). Blocks; see AsyncCheckpointUploader."""
        if step < 0:
            raise StorageError(f"checkpoint step must be >= 0, got {step}")
        d = step_dir(step)
        m = upload_manifested(
            self.store, Path(local_dir), d, progress=progress, step=step, stage=stage,
            config_hash=config_hash, extra=extra,
        )
        log.info("checkpoint %s/%s complete (%d files, %d bytes)", self.uri, d, len(m.files), m.total_bytes)
        return CheckpointInfo(step, f"{self.uri.rstrip('/')}/{d}", m)

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
                msg = f"checkpoint {info.uri} is damaged ({files}): {e}; falling back to the previous one"
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
        log.info("deleted checkpoint %s/%s", self.uri, d)

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
    ) -> None:
        """Queue ``local_dir`` as checkpoint ``step`` after the previous upload finished."""
        if not self.wait(wait_timeout, raise_errors=self.strict):
            raise StorageError(
                f"previous checkpoint upload to {self.store.uri} still running after {wait_timeout}s"
            )
        local_dir = Path(local_dir)
        kwargs = {"stage": stage, "config_hash": config_hash, "extra": extra}
        self._thread = threading.Thread(
            target=self._run, args=(local_dir, step, kwargs), name=f"rarl-ckpt-upload-{step}", daemon=True
        )
        self._thread.start()

    def _run(self, local_dir: Path, step: int, kwargs: dict[str, Any]) -> None:
        t0 = time.monotonic()
        try:
            info = self.store.save(local_dir, step, **kwargs)
        except BaseException as e:  # surfaced through wait()/last_error
            with self._lock:
                self.last_error = e
                self._pending_error = e
                self.failures += 1
            log.error("checkpoint upload step %d to %s failed: %s", step, self.store.uri, e)
            return
        with self._lock:
            self.last_completed = info
        log.info("checkpoint step %d uploaded in %.1fs", step, time.monotonic() - t0)
        if self.keep:
            try:
                self.store.prune(self.keep)
            except StorageError as e:
                log.warning("pruning old checkpoints in %s failed: %s", self.store.uri, e)
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
