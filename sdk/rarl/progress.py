"""Where the trainer's progress goes (its schema, ``Progress``, is in ``rarl.api.reports``).

The trainer (rank 0) calls a ``ProgressReporter``; the local implementation
writes ``progress.json`` atomically (the local backend and ``rarlctl run`` read
it), the Kubernetes one (``progress_k8s``) patches the RARLJob's status.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from rarl.api.reports import Progress


class ProgressReporter(Protocol):
    """Where the trainer sends progress; implementations must never raise into training."""

    def report(self, progress: Progress) -> None: ...

    def close(self) -> None: ...


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a reader never sees a half-written file (write to a temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _reward_in(path: Path) -> float | None:
    try:
        return Progress.model_validate(json.loads(path.read_text())).reward
    except (OSError, ValueError):
        return None


class FileProgressReporter:
    """Writes ``progress.json`` in the run folder (atomically) on every report."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._last_reward: float | None = _reward_in(self.path)  # a resumed run keeps showing it

    def report(self, progress: Progress) -> None:
        # A report without a reward (a message, the export) keeps the last one, as the status patch does.
        if progress.reward is None and self._last_reward is not None:
            progress = progress.model_copy(update={"reward": self._last_reward})
        self._last_reward = progress.reward
        try:
            write_json_atomic(self.path, progress.model_dump(mode="json"))
        except OSError:
            pass  # progress is advisory; never stop training for it

    def close(self) -> None:
        pass


def read_progress(path: Path) -> Progress | None:
    """The last progress written at ``path``, or None when there is none (yet)."""
    try:
        return Progress.model_validate(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None
