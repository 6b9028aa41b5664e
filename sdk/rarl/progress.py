"""Progress of a training run, as the trainer reports it.

The trainer (rank 0) calls a ``ProgressReporter``; the local implementation
writes ``progress.json`` atomically (the local backend and ``rarlctl run`` read
it), the Kubernetes one patches the RARLJob's status. Both carry the same
fields, which mirror ``RARLJobStatus``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class Progress:
    """One snapshot of a run's progress (fields named as in RARLJobStatus, snake_case)."""

    stage: str | None = None
    step: int = 0
    total_steps: int = 0
    reward: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    latest_checkpoint: str | None = None
    eta_seconds: float | None = None
    model_uri: str | None = None
    message: str | None = None
    updated_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def status_patch(self) -> dict[str, Any]:
        """The camelCase ``status`` fields this snapshot sets on a RARLJob."""
        patch: dict[str, Any] = {"step": self.step, "totalSteps": self.total_steps}
        if self.stage is not None:
            patch["stage"] = self.stage
        if self.reward is not None:
            patch["reward"] = round(float(self.reward), 6)
        if self.metrics:
            patch["metrics"] = {k: float(v) for k, v in self.metrics.items()}
        if self.latest_checkpoint:
            patch["latestCheckpoint"] = self.latest_checkpoint
        if self.eta_seconds is not None:
            patch["etaSeconds"] = round(float(self.eta_seconds), 1)
        if self.model_uri:
            patch["modelURI"] = self.model_uri
        return patch


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


class FileProgressReporter:
    """Writes ``progress.json`` in the run folder (atomically) on every report."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def report(self, progress: Progress) -> None:
        try:
            write_json_atomic(self.path, progress.to_dict())
        except OSError:
            pass  # progress is advisory; never stop training for it

    def close(self) -> None:
        pass


def read_progress(path: Path) -> Progress | None:
    """The last progress written at ``path``, or None when there is none (yet)."""
    try:
        return Progress.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None
