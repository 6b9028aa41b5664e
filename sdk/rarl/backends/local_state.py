"""The files that hold a local job: the spec, the runner's state, logs and the trainer's run folder.

Shared by the local backend (which reads them) and the supervisor (which
writes them). Writes are atomic, so a reader never sees half a state.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rarl.api.vocabulary import CONDITION_FAILED, CONDITION_RESTARTING, CONDITION_RUNNING, CONDITION_SUSPENDED
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
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_state(files: JobFiles) -> dict[str, Any]:
    try:
        return json.loads(files.state.read_text())
    except (OSError, ValueError):
        return {}


def write_state(files: JobFiles, state: dict[str, Any]) -> None:
    write_json_atomic(files.state, state)


_PHASE_CONDITIONS = frozenset({CONDITION_RUNNING, CONDITION_RESTARTING, CONDITION_SUSPENDED})
"""The conditions that hold while the job is in that phase: a transition sets the others False."""


def add_condition(state: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """Record a transition: the condition of that type becomes True, the other phase conditions False (with its reason).

    Each condition's ``lastTransitionTime`` is when its status last changed (Kubernetes' meaning);
    the transition itself is also appended to ``state["events"]``, which is never rewritten, so the
    history (``events()``) keeps every transition at the time it happened, across attempts and
    suspend/resume.
    """
    now = now_rfc3339()
    conditions = [c for c in state.get("conditions", []) if c.get("type") != type_]
    for c in conditions:
        if c.get("status") == "True" and c.get("type") in _PHASE_CONDITIONS:
            # why it ended, as the operator writes it (not the stale "attempt 3 started")
            c.update(status="False", reason=reason, message=message, lastTransitionTime=now)
    conditions.append({"type": type_, "status": "True", "reason": reason, "message": message,
                       "lastTransitionTime": now})
    state["conditions"] = conditions
    add_event(state, "Warning" if type_ == CONDITION_FAILED else "Normal", reason, message, now)


def end_condition(state: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """Record the end of a phase condition (resume: Suspended becomes False), as the operator does."""
    now = now_rfc3339()
    conditions = [c for c in state.get("conditions", []) if c.get("type") != type_]
    conditions.append({"type": type_, "status": "False", "reason": reason, "message": message,
                       "lastTransitionTime": now})
    state["conditions"] = conditions
    add_event(state, "Normal", reason, message, now)


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
