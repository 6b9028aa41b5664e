"""Dataset locations as local paths: a path, ``file://``, ``s3://`` (downloaded once into the cache) or ``builtin:``.

The grammar is ``rarl.api.uri``'s; s3:// reaches the bucket with the job's storage settings.

Every rank resolves its locations itself (``run_setup.load_data``): the cache of
``rarl.storage.cached_download`` is per node and takes a file lock around each download, so one
rank of a node downloads while that node's other ranks wait on the lock (not in a collective) and
then find the cached copy.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rarl.api.catalogue import BUILTIN_DATASETS
from rarl.api.uri import InvalidURI, builtin_name, is_s3, local_path
from rarl.errors import StorageError
from rarl.storage import cached_download
from rarl.storage.transfer import default_cache_dir
from rarl_trainer.config import transfer_progress
from rarl_trainer.data.items import DataError

if TYPE_CHECKING:
    from rarl.api.types import StorageSpec


def builtin_manifest(name: str) -> Path:
    """``builtin:<name>``: the package's data file as a JSONL manifest in the cache (written once).

    The data stays in its package (installed by the user or ``make setup``); only the converted
    manifest is cached, keyed by the package file's sha256.
    """
    spec = BUILTIN_DATASETS[name]
    try:
        source = importlib.resources.files(spec.package).joinpath(spec.file)
        raw = source.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DataError(f"builtin:{name} is read from the {spec.package!r} package: pip install "
                        f"{spec.distribution or spec.package} ({exc})") from None
    dest = default_cache_dir() / "datasets" / f"{name}-{hashlib.sha256(raw).hexdigest()[:12]}.jsonl"
    if not dest.is_file():
        rows = []
        for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r").split("\t")
            try:
                text, value = fields[0], float(fields[spec.column])
            except (IndexError, ValueError):
                raise DataError(f"builtin:{name}: {spec.file} line {lineno}: expected the text, then the target in "
                                f"tab-separated field {spec.column + 1}") from None
            rows.append(json.dumps({"id": f"{name}-{lineno}", "text": text, "target": value}))
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
        os.replace(tmp, dest)
    return dest


def resolve_location(uri: str, storage: StorageSpec | None = None) -> Path:
    """A local path for a dataset location; DataError when it is missing or unreachable.

    ``storage`` (the job's ``spec.storage``) reaches s3:// locations; without it the standard AWS
    environment and ``RARL_S3_ENDPOINT`` apply.
    """
    name = builtin_name(uri)
    if name is not None:
        return builtin_manifest(name)
    if is_s3(uri):
        try:
            return Path(cached_download(uri, settings=storage, progress=transfer_progress("download")))
        except StorageError as exc:
            raise DataError(f"{uri}: {exc}") from None
    try:
        path = local_path(uri)
    except InvalidURI as exc:
        raise DataError(str(exc)) from None
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return path
