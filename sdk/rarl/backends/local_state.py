"""The files that hold a local job: the spec, the runner's state, logs and the trainer's run folder.

Shared by the local backend (which reads them) and the supervisor (which
writes them while it runs). ``state.json`` holds the job's status in the API's
shape (camelCase ``RARLJobStatus`` fields), the runner's own fields (pids, the
submit folder) and the append-only event list. Writes are atomic, so a reader
never sees half a state.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rarl.api.types import RARLJobSpec
from rarl.api.vocabulary import OPERATOR_STATUS_FIELDS
from rarl.lifecycle import Plan, rfc3339
from rarl.progress import write_json_atomic


@dataclass(frozen=True)
class JobFiles:
    """Paths of one job under ``<home>/jobs/<name>/``."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "job.yaml"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def progress(self) -> Path:
        return self.run_dir / "progress.json"

    @property
    def termination_log(self) -> Path:
        return self.root / "termination-log"

    def log(self, attempt: int) -> Path:
        return self.root / "logs" / f"attempt-{attempt}.log"


def now_rfc3339() -> str:
    return rfc3339(datetime.now(timezone.utc))


def read_state(files: JobFiles) -> dict[str, Any]:
    try:
        return json.loads(files.state.read_text())
    except (OSError, ValueError):
        return {}


def write_state(files: JobFiles, state: dict[str, Any]) -> None:
    write_json_atomic(files.state, state)


STATUS_FIELDS = (*OPERATOR_STATUS_FIELDS, "modelURI")
"""The status fields a plan of ``rarl.lifecycle.decide`` writes; ``state.json`` holds them as the API does."""


def record_plan(state: dict[str, Any], plan: Plan) -> None:
    """Take a plan's status fields into ``state`` (a field the plan leaves unset is removed) and append its events.

    The events go to ``state["events"]``, which is never rewritten, so the history (``events()``) keeps
    every transition at the time it happened, across attempts and suspend/resume.
    """
    for key in STATUS_FIELDS:
        if key in plan.status:
            state[key] = plan.status[key]
        else:
            state.pop(key, None)
    now = now_rfc3339()
    for type_, reason, message in plan.events:
        add_event(state, type_, reason, message, now)


def with_suspend(spec: RARLJobSpec, suspend: bool) -> RARLJobSpec:
    """The spec as ``decide`` should see it locally: ``runPolicy.suspend`` is what was last asked for.

    Locally suspend and resume are verbs, not spec edits: the stored spec keeps what it was submitted with.
    """
    if spec.run_policy.suspend == suspend:
        return spec
    return spec.model_copy(update={"run_policy": spec.run_policy.model_copy(update={"suspend": suspend})})


def add_event(state: dict[str, Any], type_: str, reason: str, message: str, time: str | None = None) -> None:
    """Append one event (type, reason, message, time) to the job's append-only history."""
    state.setdefault("events", []).append(
        {"type": type_, "reason": reason, "message": message, "time": time or now_rfc3339()})


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` non-empty lines of a text file (empty when there is none)."""
    try:
        with open(path, errors="replace") as fh:
            return [line.rstrip("\n") for line in deque((ln for ln in fh if ln.strip()), maxlen=lines)]
    except OSError:
        return []


def process_alive(pid: int | None, marker: str = "rarl.backends.supervisor") -> bool:
    """True when ``pid`` runs and is ours (guards against pid reuse on Linux)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            data = cmdline.read_bytes()
        except OSError:
            return False
        if not data:  # a zombie: exited, not yet reaped
            return False
        return marker.encode() in data
    return True
