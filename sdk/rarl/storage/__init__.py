"""Storage for checkpoints, models and datasets: S3 or local paths, one interface.

No torch here: the SDK, the CLI and the operator import this too.
"""

from rarl.storage.base import NotFound, ObjectInfo, ProgressCallback, ProgressCounter, Store
from rarl.storage.checkpoints import AsyncCheckpointUploader, CheckpointInfo, CheckpointStore
from rarl.storage.manifest import (
    MANIFEST_NAME,
    ChecksumMismatch,
    FileEntry,
    Manifest,
    Mismatch,
    build_manifest,
    parse_manifest,
    safe_join,
    safe_relpath,
)
from rarl.storage.transfer import cached_download, download_tree, open_store, read_manifest, upload_tree

__all__ = [
    "MANIFEST_NAME",
    "AsyncCheckpointUploader",
    "CheckpointInfo",
    "CheckpointStore",
    "ChecksumMismatch",
    "FileEntry",
    "Manifest",
    "Mismatch",
    "NotFound",
    "ObjectInfo",
    "ProgressCallback",
    "ProgressCounter",
    "Store",
    "build_manifest",
    "cached_download",
    "download_tree",
    "open_store",
    "parse_manifest",
    "read_manifest",
    "safe_join",
    "safe_relpath",
    "upload_tree",
]
