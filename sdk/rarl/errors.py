"""Typed exceptions of the SDK, CLI and storage layer.

Every error a user can cause carries a message that names the field, file,
endpoint or job involved, and never a secret value.
"""

from __future__ import annotations

from dataclasses import dataclass


class RARLError(Exception):
    """Base of every error raised on purpose by rarl."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where (YAML path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidSpec(RARLError):
    """A RARLJob (or part of one) is not valid; ``problems`` lists each field problem."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + str(p) for p in self.problems) or f"{prefix}invalid spec")


class InvalidArgument(RARLError, ValueError):
    """A bad argument to an SDK call (an unknown backend or option, a wrong type); names the argument."""


class JobNotFound(RARLError):
    """No job of that name exists in the backend (and namespace)."""


class JobFinished(RARLError):
    """The job has finished (Succeeded or Failed): it cannot be suspended, resumed or reach another phase."""


class WaitTimeout(RARLError):
    """``wait`` ran out of time before the job reached a wanted phase."""


class BackendUnavailable(RARLError):
    """The backend cannot be reached or is not set up (no cluster, CRD missing, no run home)."""


class StorageError(RARLError):
    """A storage operation failed: unreachable endpoint, missing bucket, bad credentials, bad checksum."""


class ModelNotExported(StorageError):
    """The job has no exported model yet (it has not succeeded): the job's state, so ``rarlctl`` exits 1, as for a
    failed job. A ``StorageError`` for the callers of ``fetch_model`` that caught one before it had a type."""

    def __init__(self, name: str, phase: str | None):
        super().__init__(f"job {name!r} has no exported model yet (phase {phase or 'Pending'}); models are exported "
                         "when the last stage ends")


def exported_model_uri(job) -> str:
    """``status.modelURI`` of a job (a ``RARLJob``), or ``ModelNotExported``: the one check of fetch and predict."""
    if not job.status.model_uri:
        raise ModelNotExported(job.name, job.status.phase)
    return job.status.model_uri


class ResumeNotice(UserWarning):
    """A warning: a local job found an earlier run's checkpoint at its ``checkpoint.uri`` and will continue from it
    (or re-export a finished one), where a user may have expected a fresh start. ``rarlctl`` prints the same line."""
