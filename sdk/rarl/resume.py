"""What starting a job does with checkpoints already at its ``checkpoint.uri``: said before it starts.

A job continues from the newest checkpoint at its ``checkpoint.uri``: a crashed attempt, a
suspended job, or an earlier job of the same name (deleting a job keeps its checkpoints and model).
``rarlctl run`` / ``submit`` on the local backend look first and say which of these it is; a
changed training spec is refused here as the trainer would refuse it: both ask
``rarl.api.rules.resume_decision`` (``checkpoint.onSpecChange``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rarl.api.rules import ResumeDecision
    from rarl.api.types import RARLJob


@dataclass(frozen=True)
class EarlierRun:
    """The newest complete checkpoint at a job's ``checkpoint.uri``, compared with the job's spec."""

    step: int
    total_steps: int
    uri: str
    decision: ResumeDecision  # what this job's start does with it (``checkpoint.onSpecChange``)

    @property
    def changes(self) -> tuple[str, ...] | None:
        """What differs from the job's training settings; None: the same settings."""
        return self.decision.changes

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


def earlier_run(job: RARLJob) -> EarlierRun | None:
    """The newest complete checkpoint at ``job.spec.checkpoint.uri`` (None when there is none).

    ``job`` as the trainer will see it (the local backend's absolute locations): its settings are compared.
    """
    from rarl.api.rules import resume_decision
    from rarl.storage import CheckpointStore

    info = CheckpointStore(job.spec.checkpoint.uri, job.spec.storage).latest()
    if info is None:
        return None
    decision = resume_decision(job.spec, info.step, info.manifest.config_hash, info.extra.get("training_settings"))
    return EarlierRun(info.step, job.spec.total_steps(), info.uri, decision)


def notice(job: RARLJob, earlier: EarlierRun) -> str:
    """One line: what this start will do with the earlier checkpoint (the refusal is ``refusal``)."""
    decision = earlier.decision
    if decision.action == "restart":
        return (f"checkpoint.uri holds step {earlier.step} of an earlier run with other training settings "
                f"({decision.what}): deleting it and training from step 0 (checkpoint.onSpecChange: restart)")
    if decision.changed:
        return (f"resuming from step {earlier.step} of {earlier.total_steps} of an earlier run with other training "
                f"settings ({decision.what}) (checkpoint.onSpecChange: resume)")
    if earlier.finished:
        return (f"checkpoint.uri holds the final checkpoint (step {earlier.step} of {earlier.total_steps}) of an "
                "earlier run with these settings: nothing to train, its model is exported again")
    return f"resuming from step {earlier.step} of {earlier.total_steps} of an earlier run ({earlier.uri})"


def refusal(job: RARLJob, earlier: EarlierRun) -> str | None:
    """The error a start under changed settings gets with ``checkpoint.onSpecChange: fail`` (else None)."""
    return earlier.decision.message if earlier.decision.action == "refuse" else None
