"""Run RARLJobs as local processes: the embedded default (``rarlctl run``, CI without a cluster).

Each job lives in ``<home>/jobs/<name>/``: the spec, the runner's
``state.json``, one log per attempt, and the trainer's run folder with its
``progress.json``. Status is computed from those files and from whether the
runner process is alive, so it is right after the CLI exits and restarts; a
runner that died is reported as Failed (``RunnerDied``) with its last log lines.
The lifecycle is the operator's (``rarl.lifecycle``): ``submit`` and ``resume``
carry out its plan while no runner runs, the runner (``supervisor``) after.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rarl.api.types import ObjectMeta, RARLJob, RARLJobSpec, RARLJobStatus
from rarl.api.uri import builtin_name, has_scheme
from rarl.api.vocabulary import ACTIVE_PHASES, REASON_RUNNER_DIED, TERMINAL_PHASES
from rarl.backends.base import Backend, JobEvent
from rarl.backends.local_state import (
    STATUS_FIELDS,
    JobFiles,
    now_rfc3339,
    process_alive,
    read_state,
    record_plan,
    tail,
    with_suspend,
    write_state,
)
from rarl.errors import BackendUnavailable, InvalidArgument, InvalidSpec, JobNotFound, Problem, RARLError
from rarl.lifecycle import Observed, Plan, decide, fail
from rarl.progress import read_progress


def _local_path(uri: str, base: Path) -> str:
    """Relative paths in a spec are relative to where it was submitted; make them absolute."""
    if has_scheme(uri) or builtin_name(uri) is not None or os.path.isabs(uri):
        return uri
    candidate = base / uri
    # a hub id such as Qwen/Qwen2.5-VL-3B-Instruct is not a local path: keep it unless it exists here
    return str(candidate.resolve()) if uri.startswith(".") or candidate.exists() else uri


def _is_job_name(name: str) -> bool:
    try:
        ObjectMeta(name=name)
    except ValueError:
        return False
    return True


def node_problem(job: RARLJob) -> Problem | None:
    """The local backend runs one node: a job with more is refused (``validate`` warns of it)."""
    nodes = job.spec.resources.nodes
    if nodes <= 1:
        return None
    return Problem("spec.resources.nodes", f"the local backend runs one node; got {nodes} (use --backend kubernetes)")


def _clear_finished(files: JobFiles) -> None:
    """A finished job submitted again starts from fresh state, but its training record stays where it was.

    Kept: ``logs/`` (the new attempts append to them) and ``run/tensorboard/`` (the earlier stages' curves,
    where the README points; a re-export adds its evaluation there). Everything else of the job folder goes.
    """
    keep = {files.root / "logs", files.run_dir / "tensorboard"}
    for folder in (files.root, files.run_dir):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path in keep or path == files.run_dir:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def absolutize(job: RARLJob, base: Path) -> RARLJob:
    """A copy of ``job`` whose local locations are absolute, so the runner works from any folder."""
    job = job.model_copy(deep=True)
    spec = job.spec
    spec.checkpoint.uri = _local_path(spec.checkpoint.uri, base)
    spec.output.uri = _local_path(spec.output.uri, base)
    spec.model.base = _local_path(spec.model.base, base)
    for field in ("train", "eval", "images"):
        value = getattr(spec.dataset, field)
        if value:
            setattr(spec.dataset, field, _local_path(value, base))
    return job


class LocalBackend(Backend):
    """Jobs as local processes, state under ``home`` (default ``.rarl``, or env ``RARL_HOME``).

    Raises ``JobNotFound`` for unknown names, ``InvalidSpec`` for bad jobs and
    ``BackendUnavailable`` when ``home`` cannot be written.
    """

    name = "local"

    def __init__(self, home: str | Path | None = None):
        self.home = Path(home or os.environ.get("RARL_HOME") or ".rarl").resolve()
        self.jobs_dir = self.home / "jobs"
        # job folder -> (job.yaml's stat key, its validated spec): a wait polls every second, and a local job's
        # job.yaml only changes when it is submitted again, so it is validated once, not on every poll
        self._specs: dict[Path, tuple[tuple[int, int, int], RARLJob]] = {}

    # ------------------------------------------------------------------ helpers

    def _files(self, name: str) -> JobFiles:
        """The job's folder; a name that is no job name (``../x``, a path) names none, so nothing outside is touched."""
        if not _is_job_name(name):
            raise JobNotFound(f"no local job named {name!r} in {self.home} (job names are lowercase letters, "
                              "digits and '-')")
        return JobFiles(self.jobs_dir / name)

    def _existing(self, name: str) -> JobFiles:
        files = self._files(name)
        if not files.config.exists():
            raise JobNotFound(f"no local job named {name!r} in {self.home} (see: rarlctl list)")
        return files

    def _start_runner(self, files: JobFiles) -> int:
        """Start the detached supervisor (own session: it outlives the CLI).

        ``-P`` (safe path): ``python -m`` would put its working folder first on the import path.
        """
        log = open(files.root / "runner.log", "ab")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "rarl.backends.supervisor", str(files.root)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=str(files.root),
            )
        finally:
            log.close()
        return proc.pid

    def _status(self, files: JobFiles, job: RARLJob) -> RARLJobStatus:
        state = read_state(files)
        phase = state.get("phase") or "Pending"
        if phase in ACTIVE_PHASES and self._runner_gone(files, state):
            # the runner may have just finished: re-read before declaring it dead
            state = read_state(files)
            phase = state.get("phase") or "Pending"
            if phase in ACTIVE_PHASES:
                lines = tail(files.log(max(1, int(state.get("attempt", 1)))), 5) or tail(files.root / "runner.log", 5)
                message = "the local runner process died" + (": " + " | ".join(lines) if lines else "")
                record_plan(state, fail(self._observed(job, state, job.spec), REASON_RUNNER_DIED, message))
                phase = state["phase"]
                write_state(files, state)
        progress = read_progress(files.progress)
        status = RARLJobStatus.model_validate({k: state[k] for k in STATUS_FIELDS if k in state})
        status.phase, status.total_steps = phase, job.spec.total_steps()
        if progress is not None:
            status.stage = progress.stage
            status.step = progress.step
            status.total_steps = progress.total_steps or status.total_steps
            status.reward = progress.reward
            status.metrics = dict(progress.metrics)
            status.latest_checkpoint = progress.latest_checkpoint
            status.eta_seconds = progress.eta_seconds if phase == "Running" else None
        return status

    @staticmethod
    def _observed(job: RARLJob, state: dict, spec: RARLJobSpec) -> Observed:
        """What ``decide`` sees while no runner runs: the recorded status, no trainer process."""
        return Observed(name=job.name, spec=spec, problems=[], status=state, generation=None,
                        now=dt.datetime.now(dt.timezone.utc))

    def _carry_out(self, files: JobFiles, state: dict, plan: Plan) -> None:
        """Record the plan (write-ahead), then start the runner when it asks for an attempt."""
        record_plan(state, plan)
        write_state(files, state)
        if plan.ensure_attempt is not None:
            self._start_runner(files)  # the runner records its own pid in state.json

    @staticmethod
    def _runner_gone(files: JobFiles, state: dict) -> bool:
        """The runner has died (or never managed to start within a minute)."""
        pid = state.get("runnerPid")
        if pid:
            return not process_alive(pid)
        started = state.get("pendingSince") or time.time()
        return time.time() - started > 60

    def _stored_job(self, files: JobFiles) -> RARLJob:
        """The job as ``job.yaml`` holds it (a copy), validated again only when the file changed."""
        from rarl.api.validation import parse_job

        try:
            stat = files.config.stat()
        except OSError:
            stat = None
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino) if stat is not None else None
        cached = self._specs.get(files.root)
        if cached is not None and cached[0] == key:
            return cached[1].model_copy(deep=True)
        job = parse_job(files.config.read_text(), origin=str(files.config))
        if key is not None:
            self._specs[files.root] = (key, job.model_copy(deep=True))
        return job

    def _load(self, files: JobFiles) -> RARLJob:
        job = self._stored_job(files)
        job.status = self._status(files, job)
        created = read_state(files).get("creationTimestamp")
        if created:  # as the API server sets it: when the job was submitted, kept across resumes (list's AGE)
            job.metadata.creationTimestamp = created  # type: ignore[attr-defined]  (ObjectMeta keeps extra fields)
        return job

    # ------------------------------------------------------------------ API

    def submit(self, job: RARLJob, cwd: str | Path | None = None) -> RARLJob:
        files = self._files(job.name)
        # refusals first: a finished job of the same name is only cleared for a submission that is taken
        if (nodes := node_problem(job)) is not None:
            raise InvalidSpec([nodes])
        wanted = job.spec.resources.gpus_per_node
        if wanted > 0:  # refused, not run on fewer GPUs or on the CPU without a word
            from rarl.backends.supervisor import visible_gpus

            have, how = visible_gpus()
            if have < wanted:
                raise InvalidSpec([Problem("spec.resources.gpusPerNode",
                                           f"asks for {wanted} GPU(s); this machine shows {have} ({how}): set it to "
                                           f"{have} to run here{' (0: on the CPU)' if have else ' on the CPU'}, or "
                                           "use --backend kubernetes")])
        if files.config.exists():
            phase = (read_state(files).get("phase") or "Pending")
            if phase not in TERMINAL_PHASES or process_alive(read_state(files).get("runnerPid")):
                raise RARLError(f"job {job.name!r} already exists ({phase}); delete it first or pick another name")
            _clear_finished(files)  # a finished job of the same name: its checkpoints, model and training record stay
        base = Path(cwd or os.getcwd())
        job = absolutize(job, base)
        self._specs.pop(files.root, None)  # a new job.yaml, whatever its stat says
        try:
            files.root.mkdir(parents=True, exist_ok=True)
            files.config.write_text(job.to_yaml(include_status=False))
        except OSError as exc:
            raise BackendUnavailable(f"cannot write the job folder {files.root}: {exc.strerror or exc}") from None
        state = {"cwd": str(base), "creationTimestamp": now_rfc3339(), "pendingSince": time.time(), "events": []}
        self._carry_out(files, state, decide(self._observed(job, state, job.spec)))
        return self._load(files)

    def get(self, name: str) -> RARLJob:
        return self._load(self._existing(name))

    def list(self, labels: dict[str, str] | None = None, namespace: str | None = None) -> list[RARLJob]:
        if namespace is not None:  # refused, not ignored: the jobs listed would not be that namespace's
            raise InvalidArgument(f"namespace: only the kubernetes backend has namespaces (local jobs have none); "
                                  f"got {namespace!r}")
        if not self.jobs_dir.is_dir():
            return []
        jobs = []
        for folder in sorted(self.jobs_dir.iterdir()):
            files = JobFiles(folder)
            if not files.config.exists():
                continue
            try:
                job = self._load(files)
            except RARLError:
                continue
            if labels and any(job.metadata.labels.get(k) != v for k, v in labels.items()):
                continue
            jobs.append(job)
        return jobs

    def logs(self, name: str, follow: bool = False, node: int = 0, attempt: int | None = None,
             poll_interval: float = 0.5) -> Iterator[str]:
        files = self._existing(name)
        if node != 0:
            raise InvalidArgument(f"node: the local backend runs one node (0); got {node}")
        current = max(1, int(read_state(files).get("attempt", 1)))
        if attempt is not None and not 1 <= attempt <= current:
            raise InvalidArgument(f"attempt: job {name!r} has attempts 1..{current}; got {attempt}")
        pinned = attempt is not None and attempt != current  # an earlier attempt's log is complete
        attempt = current if attempt is None else attempt
        path = files.log(attempt)
        position = 0
        while True:
            if path.exists():
                with open(path, errors="replace") as fh:
                    fh.seek(position)
                    chunk = fh.read()
                    position = fh.tell()
                yield from chunk.splitlines()
            if not follow or pinned:
                return
            job = self.get(name)
            current = max(1, job.status.attempt)  # 0: created suspended, no attempt yet
            if current != attempt:  # a new attempt: follow its log
                attempt, path, position = current, files.log(current), 0
                continue
            if job.status.phase in TERMINAL_PHASES | {"Suspended"}:
                if not path.exists() or path.stat().st_size == position:  # nothing more will be written
                    return
            time.sleep(poll_interval)

    def suspend(self, name: str) -> RARLJob:
        files = self._existing(name)
        state = read_state(files)
        phase = state.get("phase") or "Pending"
        if phase in TERMINAL_PHASES or phase == "Suspended":
            return self.get(name)
        pid = state.get("runnerPid")
        if process_alive(pid):
            os.kill(pid, signal.SIGTERM)  # the runner forwards it; the trainer checkpoints and exits 3
        return self.get(name)

    def resume(self, name: str) -> RARLJob:
        files = self._existing(name)
        state = read_state(files)
        if state.get("phase") != "Suspended":
            raise RARLError(f"job {name!r} is {state.get('phase') or 'Pending'}, not Suspended; nothing to resume")
        # The runner records Suspended just before it exits: give it a moment to finish.
        deadline = time.monotonic() + 15
        while process_alive(state.get("runnerPid")) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(state.get("runnerPid")):
            raise RARLError(f"job {name!r} is still checkpointing; try again in a moment")
        job = self._load(files)
        state.update(runnerPid=None, childPid=None, exitCode=None, pendingSince=time.time())
        # runPolicy.suspend lifted: the next attempt, its deadline clock restarted (as on a cluster)
        self._carry_out(files, state, decide(self._observed(job, state, with_suspend(job.spec, False))))
        return self.get(name)

    def delete(self, name: str, timeout: float = 30.0) -> None:
        files = self._existing(name)
        pid = read_state(files).get("runnerPid")
        if process_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if process_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(files.root, ignore_errors=True)
        self._specs.pop(files.root, None)

    def run_dir(self, name: str) -> Path:
        """The trainer's run folder of a job (metrics, report, plots while it runs)."""
        return self._existing(name).run_dir

    def events(self, name: str) -> list[JobEvent]:
        """Every transition of the job at the time it happened, oldest first (``state.json``'s append-only list)."""
        state = read_state(self._existing(name))
        if "events" in state:
            return [JobEvent(type=e.get("type") or "Normal", reason=e.get("reason") or "",
                             message=e.get("message") or "", time=e.get("time")) for e in state["events"]]
        # a job recorded before the event list: only its conditions are left
        return [JobEvent(type="Normal" if c.get("type") != "Failed" else "Warning", reason=c.get("reason") or "",
                         message=c.get("message") or "", time=c.get("lastTransitionTime"))
                for c in state.get("conditions", [])]
