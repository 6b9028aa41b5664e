"""The local runner of one job: ``python -m rarl.backends.supervisor JOB_DIR``.

It runs detached from the CLI (its own session), so a job started by
``rarlctl submit`` keeps running after the CLI exits. It is the local executor
of the lifecycle the operator runs (``rarl.lifecycle.decide``): it observes its
trainer child process as the operator observes a batch Job and its pods, asks
``decide`` for a plan, and carries it out (record the status and events in
``state.json``, start the attempt's trainer, stop it), so a local job goes
through the same phases, reasons, conditions and events as one on a cluster.
SIGTERM means suspend (``runPolicy.suspend`` set): the trainer gets SIGTERM,
checkpoints and exits 3.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rarl.api.types import RARLJobSpec
from rarl.api.vocabulary import (
    ENV_ATTEMPT,
    ENV_JOB_NAME,
    ENV_JOB_NAMESPACE,
    ENV_TERMINATION_LOG,
    TERMINAL_PHASES,
    TRAINER_LAUNCHER,
    trainer_cli_args,
)
from rarl.backends.local_state import JobFiles, read_state, record_plan, tail, with_suspend, write_state
from rarl.lifecycle import JobView, Observed, Plan, PodView, decide


def trainer_command(files: JobFiles, gpus: int) -> list[str]:
    """The trainer's command line: torchrun over the local GPUs, or one CPU process.

    ``-P`` (safe path): the trainer runs in the folder the job was submitted from, and ``python -m`` would put
    that folder first on the import path, so a stray ``yaml.py`` there would run. (Its workers and helpers get
    ``PYTHONSAFEPATH`` from ``Supervisor.run``.)
    """
    args = trainer_cli_args(str(files.config), str(files.run_dir))
    if gpus > 1:  # rarl's torchrun launcher keeps the exit codes 2/3 that plain torchrun turns into 1
        return [sys.executable, "-P", "-m", TRAINER_LAUNCHER, "--standalone", f"--nproc_per_node={gpus}", *args]
    return [sys.executable, "-P", *args]


def visible_gpus() -> tuple[int, str]:
    """How many GPUs this machine shows a trainer, and how that was found (for a refusal's message)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()]), f"CUDA_VISIBLE_DEVICES={visible!r}"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0, "no nvidia-smi"
    return len([line for line in out.stdout.splitlines() if line.startswith("GPU ")]), "nvidia-smi -L"


class Supervisor:
    """Runs the attempts of one job: observe the child process, ``decide``, carry the plan out, wait."""

    POLL_SECONDS = 0.2

    def __init__(self, job_dir: Path):
        from rarl.api.validation import parse_job

        self.files = JobFiles(Path(job_dir))
        self.job = parse_job(self.files.config.read_text(), origin=str(self.files.config))
        self.suspend_requested = threading.Event()
        self.wake = threading.Event()
        self.child: subprocess.Popen | None = None
        self.child_attempt = 0  # the attempt the child runs (0: none started by this runner)
        self.child_restarts = 0  # the restart count when it was started (JobView.restarts)
        self.exit_code: int | None = None  # the child's, once it has exited

    def _on_sigterm(self, signum, frame) -> None:
        self.suspend_requested.set()
        self.wake.set()

    # ------------------------------------------------------------------ observe

    def spec(self) -> RARLJobSpec:
        """The job's spec with ``runPolicy.suspend`` as asked of this runner (SIGTERM).

        A job created suspended was held by ``submit``; this runner was started by ``resume``.
        """
        return with_suspend(self.job.spec, self.suspend_requested.is_set())

    def observe(self, state: dict) -> Observed:
        """What ``decide`` sees: the recorded status and this runner's child as the attempt's Job and pod."""
        obs = Observed(name=self.job.name, spec=self.spec(), problems=[], status=state, generation=None,
                       now=dt.datetime.now(dt.timezone.utc))
        if self.child is None:
            return obs
        attempt, code = self.child_attempt, self.exit_code
        obs.jobs[attempt] = JobView(name=f"attempt-{attempt}", attempt=attempt, complete=code == 0,
                                    failed=code not in (None, 0), restarts=self.child_restarts)
        phase = "Running" if code is None else "Succeeded" if code == 0 else "Failed"
        obs.pods[attempt] = [PodView(name=f"pid {self.child.pid}", attempt=attempt, phase=phase,
                                     exit_codes=() if code is None else (code,), message=self._last_words(code))]
        return obs

    def _last_words(self, code: int | None) -> str:
        """The trainer's termination message, else the tail of its log (the kubelet's FallbackToLogsOnError)."""
        if code is None or code == 0:
            return ""
        try:
            text = self.files.termination_log.read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text or " | ".join(tail(self.files.log(self.child_attempt), 5))

    # ------------------------------------------------------------------ act

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        state = read_state(self.files)
        state["runnerPid"] = os.getpid()
        write_state(self.files, state)
        while True:
            state = read_state(self.files)
            plan = decide(self.observe(state))
            if plan.delete_jobs and self._child_alive():
                # Stop first, then decide again on how it ended: the status says Suspended (or Failed) only
                # once the trainer has checkpointed and exited, so `resume` right after it works.
                self._stop_child()
                continue
            if self.execute(state, plan):
                continue  # a child was started: the next plan sees it run
            if plan.status.get("phase") in TERMINAL_PHASES | {"Suspended"}:
                return 0
            self._wait(plan.requeue_after)

    def execute(self, state: dict, plan: Plan) -> bool:
        """Record the plan (write-ahead: before a new attempt starts), then start what it ensures.

        Returns whether a child was started.
        """
        record_plan(state, plan)
        write_state(self.files, state)
        if plan.ensure_attempt is None or plan.ensure_attempt == self.child_attempt:
            return False
        self._start_child(state, plan.ensure_attempt, plan.restarts_for_attempt)
        return True

    def _child_alive(self) -> bool:
        return self.child is not None and self.exit_code is None

    def _stop_child(self) -> None:
        """SIGTERM (the trainer checkpoints and exits 3), then wait for it: the next plan sees how it ended."""
        assert self.child is not None
        self.child.send_signal(signal.SIGTERM)
        self._exited(self.child.wait())

    def _exited(self, code: int) -> None:
        self.exit_code = code
        state = read_state(self.files)
        state.update(childPid=None, exitCode=code)
        write_state(self.files, state)

    def _start_child(self, state: dict, attempt: int, restarts: int) -> None:
        log_path = self.files.log(attempt)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.files.termination_log.write_text("")  # like the kubelet: the trainer writes its last words here
        # PYTHONSAFEPATH: -P for every Python process under the trainer too (torchrun's workers, helpers)
        env = {**os.environ, ENV_TERMINATION_LOG: str(self.files.termination_log), "PYTHONUNBUFFERED": "1",
               "PYTHONSAFEPATH": "1", ENV_JOB_NAME: self.job.name, ENV_ATTEMPT: str(attempt)}
        env.pop(ENV_JOB_NAMESPACE, None)  # local: progress goes to progress.json, not to a cluster
        gpus = self.job.spec.resources.gpus_per_node  # checked against this machine's GPUs when submitted
        with open(log_path, "ab") as log:
            self.child = subprocess.Popen(trainer_command(self.files, gpus), stdout=log, stderr=subprocess.STDOUT,
                                          cwd=state.get("cwd") or None, env=env, stdin=subprocess.DEVNULL)
        self.child_attempt, self.child_restarts, self.exit_code = attempt, restarts, None
        state.update(childPid=self.child.pid, exitCode=None)
        write_state(self.files, state)

    def _wait(self, requeue_after: float | None) -> None:
        """Until the child exits, a suspend is asked for, or the plan's requeue time (a deadline) comes."""
        until = None if requeue_after is None else time.monotonic() + requeue_after
        while until is None or time.monotonic() < until:
            if self.child is not None and self.exit_code is None and (code := self.child.poll()) is not None:
                self._exited(code)
                return
            if self.wake.wait(self.POLL_SECONDS):
                self.wake.clear()
                return


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rarl.backends.supervisor JOB_DIR", file=sys.stderr)
        return 2
    return Supervisor(Path(args[0])).run()


if __name__ == "__main__":
    sys.exit(main())
