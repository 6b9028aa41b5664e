"""What starting a job does with checkpoints already at its ``checkpoint.uri``: said before it starts.

A job continues from the newest checkpoint at its ``checkpoint.uri``: a crashed attempt, a
suspended job, or an earlier job of the same name (deleting a job keeps its checkpoints and model).
``rarlctl run`` / ``submit`` on the local backend look first and say which of these it is; a
changed training spec is refused here as the trainer would refuse it (``checkpoint.onSpecChange``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rarl.api.types import RARLJob


@dataclass(frozen=True)
class EarlierRun:
    """The newest complete checkpoint at a job's ``checkpoint.uri``, compared with the job's spec."""

    step: int
    total_steps: int
    uri: str
    changes: tuple[str, ...] | None  # None: same training settings

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


def earlier_run(job: RARLJob) -> EarlierRun | None:
    """The newest complete checkpoint at ``job.spec.checkpoint.uri`` (None when there is none)."""
    from rarl.api.settings import changed_settings, config_hash, training_settings
    from rarl.storage import CheckpointStore

    info = CheckpointStore(job.spec.checkpoint.uri, job.spec.storage).latest()
    if info is None:
        return None
    changes: tuple[str, ...] | None = None
    if info.manifest.config_hash not in (None, config_hash(job.spec)):
        old = info.extra.get("training_settings")
        changes = tuple(changed_settings(old, training_settings(job.spec, by_alias=True))) if old else ()
    return EarlierRun(info.step, job.spec.total_steps(), info.uri, changes)


def notice(job: RARLJob, earlier: EarlierRun) -> str:
    """One line: what this start will do with the earlier checkpoint (the refusal is ``refusal``)."""
    from rarl.api.settings import describe_changes

    policy = job.spec.checkpoint.on_spec_change
    if earlier.changes is not None:
        what = describe_changes(list(earlier.changes))
        if policy == "restart":
            return (f"checkpoint.uri holds step {earlier.step} of an earlier run with other training settings "
                    f"({what}): deleting it and training from step 0 (checkpoint.onSpecChange: restart)")
        return (f"resuming from step {earlier.step} of {earlier.total_steps} of an earlier run with other training "
                f"settings ({what}) (checkpoint.onSpecChange: resume)")
    if earlier.finished:
        return (f"checkpoint.uri holds the final checkpoint (step {earlier.step} of {earlier.total_steps}) of an "
                "earlier run with these settings: nothing to train, its model is exported again")
    return f"resuming from step {earlier.step} of {earlier.total_steps} of an earlier run ({earlier.uri})"


def refusal(job: RARLJob, earlier: EarlierRun) -> str | None:
    """The error a start under changed settings gets with ``checkpoint.onSpecChange: fail`` (else None)."""
    from rarl.api.settings import describe_changes, spec_change_refusal

    if earlier.changes is None or job.spec.checkpoint.on_spec_change != "fail":
        return None
    return spec_change_refusal(f"checkpoint step {earlier.step} at {job.spec.checkpoint.uri}",
                               describe_changes(list(earlier.changes)))
