"""``rarl.Client``: one facade over the Kubernetes and local backends, with the same semantics."""

from __future__ import annotations

import builtins
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rarl.api.types import RARLJob
from rarl.api.vocabulary import TERMINAL_PHASES
from rarl.backends.base import Backend, BytesCallback, JobEvent, ProgressCallback
from rarl.backends.config import BackendConfig, KubernetesBackendConfig, LocalBackendConfig, config_for
from rarl.errors import InvalidArgument, InvalidSpec, JobFinished, Problem, RARLError, ResumeNotice

JobSource = RARLJob | dict[str, Any] | str | Path


def load_job(source: JobSource) -> RARLJob:
    """A validated RARLJob from a model, a dict, or the path of a YAML file. Raises ``InvalidSpec``."""
    from rarl.api.validation import parse_job

    if isinstance(source, (RARLJob, dict)):
        return parse_job(source)
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidArgument(f"job: expected a RARLJob, a dict or the path of a YAML file, got {type(source).__name__}")
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidSpec([Problem("", f"cannot read: {exc.strerror or exc}")], str(path)) from None
    return parse_job(data, origin=str(path))


def _job_name(name: object) -> str:
    """A job name argument must be a string (a wrong type is named here, not deep in a backend)."""
    if not isinstance(name, str):
        raise InvalidArgument(f"name: expected a job name (a string), got {type(name).__name__}")
    return name


def fetch_destination(dest: str | os.PathLike[str], field: str = "dest") -> Path:
    """``dest`` checked before anything is fetched: a folder (existing or to create) that can be written.

    Raises ``InvalidArgument`` naming ``field`` (an empty path would write into the current folder).
    """
    if not isinstance(dest, (str, os.PathLike)):
        raise InvalidArgument(f"{field}: expected a folder path, got {type(dest).__name__}")
    text = os.fspath(dest)
    if not str(text).strip():
        raise InvalidArgument(f"{field} is empty: give the folder to download the model into")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise InvalidArgument(f"{field} {text}: exists and is not a folder")
    existing = path
    while not existing.exists():  # the nearest existing ancestor must be a writable folder
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidArgument(f"{field} {text}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidArgument(f"{field} {text}: permission denied" + ("" if existing == path else f" (in {existing})"))
    return path


class Client:
    """Submit, follow, control and fetch RARL jobs.

    >>> client = Client("local")                      # or Client("kubernetes", namespace="ml")
    >>> client = Client(KubernetesBackendConfig(namespace="ml"))   # the same, typed
    >>> job = client.submit("examples/quickstart.yaml")
    >>> client.wait(job.name, timeout=3600)
    >>> client.fetch_model(job.name, "model/")

    Errors (all subclasses of ``rarl.errors.RARLError``):
    ``InvalidArgument`` (unknown backend or backend option),
    ``InvalidSpec`` (bad job; ``.problems`` lists the fields), ``JobNotFound``,
    ``WaitTimeout``, ``BackendUnavailable`` (no cluster, CRD missing, run home
    not writable) and ``StorageError`` (model fetch).
    """

    def __init__(self, backend: Backend | BackendConfig | str = "local", **options: Any):
        """``backend``: a backend name with its options, a typed config, or a built ``Backend``.

        Raises ``InvalidArgument`` for an unknown backend or option, ``BackendUnavailable`` (kubernetes:
        no cluster configured, a kubeconfig that does not load).
        """
        if isinstance(backend, Backend):
            if options:
                raise InvalidArgument(f"options {', '.join(sorted(options))} are for a backend name or config, "
                                      "not for a built backend")
            self.backend = backend
            return
        if isinstance(backend, str):
            backend = config_for(backend, **options)
        elif options:
            raise InvalidArgument(f"options {', '.join(sorted(options))}: put them in the config")
        if isinstance(backend, LocalBackendConfig):
            from rarl.backends.local import LocalBackend

            self.backend = LocalBackend(home=backend.home)
        elif isinstance(backend, KubernetesBackendConfig):
            from rarl.backends.kubernetes import KubernetesBackend

            self.backend = KubernetesBackend(kubeconfig=backend.kubeconfig, context=backend.context,
                                             namespace=backend.namespace)
        else:
            raise InvalidArgument(f"backend: expected 'local', 'kubernetes', a backend config or a Backend, "
                                  f"got {type(backend).__name__}")

    def submit(self, job: JobSource) -> RARLJob:
        """Validate and start a job; returns it as stored (with its initial status).

        Raises ``InvalidSpec`` (``.problems`` names each field), ``InvalidArgument`` for a ``job`` of
        another type, ``RARLError`` when a job of that name exists or an earlier checkpoint's settings differ
        under ``checkpoint.onSpecChange: fail``, ``BackendUnavailable``. Warns ``ResumeNotice`` (local backend)
        when an earlier run's checkpoint at ``checkpoint.uri`` will be continued or re-exported, not restarted.
        """
        loaded = load_job(job)
        if self.backend.name == "local":
            import warnings

            from rarl.backends.local import absolutize
            from rarl.resume import earlier_run, notice, refusal

            earlier = earlier_run(absolutize(loaded, Path.cwd()))
            if earlier is not None:
                refused = refusal(loaded, earlier)
                if refused:
                    raise RARLError(refused)
                warnings.warn(notice(loaded, earlier), ResumeNotice, stacklevel=2)
        return self.backend.submit(loaded)

    def get(self, name: str) -> RARLJob:
        """The job with its current status. Raises ``JobNotFound``, ``BackendUnavailable``."""
        return self.backend.get(_job_name(name))

    def list(self, namespace: str | None = None, labels: dict[str, str] | None = None) -> builtins.list[RARLJob]:
        """Jobs of the backend's namespace (or ``namespace``, Kubernetes only) carrying all ``labels``.

        Raises ``InvalidArgument`` when ``labels`` is not a mapping of strings or for a ``namespace`` on
        the local backend, ``BackendUnavailable``.
        """
        if labels is not None and (not isinstance(labels, dict)
                                   or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
            raise InvalidArgument(f"labels: expected a dict of strings such as {{'team': 'vision'}}, got {labels!r}")
        return self.backend.list(labels, namespace=namespace)

    def wait(
        self,
        name: str,
        until: str | Iterable[str] = TERMINAL_PHASES,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = 2.0,
    ) -> RARLJob:
        """Block until the job's phase is one of ``until`` (a phase, ``"A,B"`` or a set of phases).

        ``on_progress(job)`` is called on every change. Raises ``InvalidArgument`` for an unknown
        phase name or a negative ``timeout``, ``WaitTimeout`` after ``timeout`` seconds (0: look once), ``JobFinished`` when the job finished
        in a phase not in ``until``, ``JobNotFound``.
        """
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                    or not 0 <= timeout < math.inf):
            raise InvalidArgument(f"timeout: expected seconds >= 0 (0: look once, do not wait) or None, got {timeout!r}")
        return self.backend.wait(_job_name(name), until=until, timeout=timeout, on_progress=on_progress,
                                 poll_interval=poll_interval)

    def logs(self, name: str, follow: bool = False, node: int = 0, attempt: int | None = None) -> Iterator[str]:
        """Lines of the trainer log of the current attempt (or an earlier ``attempt``), node ``node``.

        ``follow`` keeps reading until the job stops (the current attempt only). Raises
        ``InvalidArgument`` for a node or an attempt that does not exist, ``JobNotFound``, ``BackendUnavailable``.
        """
        return self.backend.logs(_job_name(name), follow=follow, node=node, attempt=attempt)

    def suspend(self, name: str) -> RARLJob:
        """Stop the trainer after a checkpoint (``resume`` continues from it); a suspended job stays so.

        Raises ``JobFinished`` for a Succeeded or Failed job, ``JobNotFound``, ``BackendUnavailable``.
        """
        self._refuse_finished(name, "suspended", "")
        return self.backend.suspend(_job_name(name))

    def resume(self, name: str) -> RARLJob:
        """Start a suspended job again from its newest checkpoint.

        Raises ``JobFinished`` for a Succeeded or Failed job, ``RARLError`` when it is not suspended
        (local backend), ``JobNotFound``, ``BackendUnavailable``.
        """
        self._refuse_finished(name, "resumed", ", not Suspended")
        return self.backend.resume(_job_name(name))

    def delete(self, name: str) -> None:
        """Stop and forget the job; checkpoints and the exported model stay in storage.

        Raises ``JobNotFound``, ``BackendUnavailable``.
        """
        self.backend.delete(_job_name(name))

    def events(self, name: str) -> builtins.list[JobEvent]:
        """What happened to the job, oldest first. Raises ``JobNotFound``, ``BackendUnavailable``."""
        return self.backend.events(_job_name(name))

    def fetch_model(self, name: str, dest: str | Path, progress: BytesCallback | None = None) -> Path:
        """Download a succeeded job's model (``status.modelURI``) into ``dest``, verified by its manifest.

        Raises ``InvalidArgument`` for a ``dest`` that cannot be a writable folder (checked first),
        ``StorageError`` (unreachable store, checksum mismatch, a failed write; ``ModelNotExported``, a
        subclass, when the job has no model yet), ``JobNotFound``.
        """
        path = fetch_destination(dest)
        return self.backend.fetch_model(_job_name(name), path, progress=progress)

    def _refuse_finished(self, name: str, what: str, not_phase: str) -> None:
        phase = self.backend.get(_job_name(name)).status.phase
        if phase in TERMINAL_PHASES:
            raise JobFinished(f"job {name!r} is {phase}{not_phase}: a finished job cannot be {what} "
                              "(delete it and submit it again to train afresh)")
