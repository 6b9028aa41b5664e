"""What every backend offers; ``rarl.Client`` is a thin facade over one of them."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from rarl.api.types import RARLJob
from rarl.api.vocabulary import TERMINAL_PHASES, phase_set
from rarl.errors import JobFinished, StorageError, WaitTimeout, exported_model_uri

ProgressCallback = Callable[[RARLJob], None]


@dataclass(frozen=True)
class JobEvent:
    """One thing that happened to a job (a Kubernetes Event, or a local state transition)."""

    type: str
    """``Normal`` or ``Warning``."""
    reason: str
    """One CamelCase word, e.g. ``Restarting``."""
    message: str
    time: str | None
    """When it happened (RFC 3339); ``None`` when the backend did not record it."""

    def to_dict(self) -> dict[str, str | None]:
        """Plain data, as ``describe -o json`` prints it."""
        return asdict(self)


BytesCallback = Callable[[int], None]


def wait_timeout(name: str, phase: str | None, timeout: float, wanted: Iterable[str]) -> WaitTimeout:
    """The error of a wait that ran out of time (one wording for every waiter)."""
    waited = "looked once (timeout 0)" if timeout == 0 else f"waited {timeout:g} s"
    return WaitTimeout(f"job {name!r} is {phase or 'Pending'}, not {' or '.join(sorted(wanted))}: {waited}")


class Backend(abc.ABC):
    """A place where RARLJobs run: a Kubernetes cluster, or local processes.

    Every method raises ``JobNotFound`` for an unknown name and
    ``BackendUnavailable`` when the backend cannot be reached.
    """

    name: str = "backend"

    @abc.abstractmethod
    def submit(self, job: RARLJob) -> RARLJob:
        """Create the job and start it; returns the job as stored."""

    @abc.abstractmethod
    def get(self, name: str) -> RARLJob:
        """The job with its current status."""

    @abc.abstractmethod
    def list(self, labels: dict[str, str] | None = None, namespace: str | None = None) -> list[RARLJob]:
        """All jobs (of ``namespace``, default the backend's), optionally only those carrying all ``labels``."""

    @abc.abstractmethod
    def logs(self, name: str, follow: bool = False, node: int = 0, attempt: int | None = None) -> Iterator[str]:
        """Lines of the trainer's log of the current attempt (or ``attempt``), node ``node``."""

    @abc.abstractmethod
    def suspend(self, name: str) -> RARLJob:
        """Stop the trainer after a checkpoint; ``resume`` continues from it."""

    @abc.abstractmethod
    def resume(self, name: str) -> RARLJob:
        """Start a suspended job again from its newest checkpoint."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Stop and forget the job (checkpoints and exported models stay where they are)."""

    def events(self, name: str) -> list[JobEvent]:
        """Recent events about the job (type, reason, message, time), oldest first."""
        return []

    def wait(
        self,
        name: str,
        until: str | Iterable[str] = TERMINAL_PHASES,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = 2.0,
    ) -> RARLJob:
        """Poll until the job's phase is one of ``until``.

        Raises ``InvalidArgument`` for an unknown phase name, ``WaitTimeout`` after ``timeout``
        seconds and ``JobFinished`` when the job finished in a phase that is not wanted.
        """
        wanted = phase_set(until)
        deadline = None if timeout is None else time.monotonic() + timeout
        last_seen = None
        while True:
            job = self.get(name)
            status = job.status
            seen = (status.phase, status.stage, status.step, status.reward) if status else None
            if on_progress is not None and seen != last_seen:
                on_progress(job)
            last_seen = seen
            if status is not None and status.phase in wanted:
                return job
            if status is not None and status.phase in TERMINAL_PHASES:
                raise JobFinished(f"job {name!r} is {status.phase}: it will never be {' or '.join(sorted(wanted))}")
            if deadline is not None and time.monotonic() >= deadline:
                raise wait_timeout(name, status.phase if status else None, timeout, wanted)
            time.sleep(poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - time.monotonic())))

    def fetch_model(self, name: str, dest: str | Path, progress: BytesCallback | None = None) -> Path:
        """Download the exported model of a succeeded job and verify it against its manifest."""
        job = self.get(name)
        uri = exported_model_uri(job)
        from rarl.storage import download_tree

        try:
            return Path(download_tree(uri, Path(dest), progress=progress, settings=job.spec.storage))
        except OSError as exc:  # writing here failed (disk full, permissions): one StorageError, not a raw OSError
            raise StorageError(f"cannot write the model into {dest}: {exc.strerror or exc}") from None
