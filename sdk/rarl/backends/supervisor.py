"""The local runner of one job: ``python -m rarl.backends.supervisor JOB_DIR``.

It runs detached from the CLI (its own session), so a job started by
``rarlctl submit`` keeps running after the CLI exits. It starts one trainer
process per attempt, classifies its exit code with the operator's rules
(``rarl.api.vocabulary``: ``classify_exit`` and ``after_failed_attempt``: 0
success; 2 configuration error, fail at once; 3 interrupted after a
checkpoint, retried for free; anything else a crash, retried from the newest
checkpoint while the restart budget lasts), and records every transition in
``state.json``.
SIGTERM means suspend: it is forwarded to the trainer, which checkpoints and
exits 3.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rarl.api.vocabulary import (
    CONDITION_RESTARTING,
    CONDITION_RUNNING,
    CONDITION_SUSPENDED,
    ENV_ATTEMPT,
    ENV_JOB_NAME,
    ENV_JOB_NAMESPACE,
    ENV_TERMINATION_LOG,
    ExitCode,
    Outcome,
    after_failed_attempt,
    classify_exit,
)
from rarl.backends.local_state import (
    JobFiles,
    add_condition,
    now_rfc3339,
    read_state,
    tail,
    write_state,
)


def trainer_command(files: JobFiles, gpus: int) -> list[str]:
    """The trainer's command line: torchrun over the local GPUs, or one CPU process.

    ``-P`` (safe path): the trainer runs in the folder the job was submitted from, and ``python -m`` would put
    that folder first on the import path, so a stray ``yaml.py`` there would run. (Its workers and helpers get
    ``PYTHONSAFEPATH`` from ``Supervisor.run``.)
    """
    args = ["-m", "rarl_trainer", "--config", str(files.config), "--resume", "auto", "--run-dir", str(files.run_dir)]
    if gpus > 1:  # rarl's torchrun launcher keeps the exit codes 2/3 that plain torchrun turns into 1
        return [sys.executable, "-P", "-m", "rarl_trainer.entrypoint", "--standalone", f"--nproc_per_node={gpus}",
                *args]
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


def exit_text(code: int) -> str:
    """How an exit code reads: a negative one is the signal that killed the process (``SIGTERM``)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited {code}"


def suspend_message(code: int) -> str:
    """The Suspended condition's message for the trainer's exit code."""
    if code == ExitCode.INTERRUPTED:
        return "suspended after a checkpoint"
    return f"suspended (trainer {exit_text(code)})"


class Supervisor:
    """Runs the attempts of one job and keeps ``state.json`` true."""

    def __init__(self, job_dir: Path):
        from rarl.api.validation import parse_job

        self.files = JobFiles(Path(job_dir))
        self.job = parse_job(self.files.config.read_text(), origin=str(self.files.config))
        self.suspend_requested = threading.Event()
        self.deadline_hit = threading.Event()
        self.child: subprocess.Popen | None = None

    def _on_sigterm(self, signum, frame) -> None:
        self.suspend_requested.set()
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def _deadline_watch(self, seconds: float) -> None:
        if not self.suspend_requested.wait(seconds) and self.child is not None and self.child.poll() is None:
            self.deadline_hit.set()
            self.child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        state = read_state(self.files)
        state["runnerPid"] = os.getpid()
        write_state(self.files, state)
        policy = self.job.spec.run_policy
        if policy.active_deadline_seconds:
            started = state.get("startEpoch") or time.time()
            left = max(0.0, policy.active_deadline_seconds - (time.time() - started))
            threading.Thread(target=self._deadline_watch, args=(left,), daemon=True).start()
        gpus = self.job.spec.resources.gpus_per_node  # checked against this machine's GPUs when submitted
        while True:
            attempt = int(state.get("attempt", 1))
            log_path = self.files.log(attempt)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self.files.termination_log.write_text("")  # like the kubelet: the trainer writes its last words here
            # PYTHONSAFEPATH: -P for every Python process under the trainer too (torchrun's workers, helpers)
            env = {**os.environ, ENV_TERMINATION_LOG: str(self.files.termination_log), "PYTHONUNBUFFERED": "1",
                   "PYTHONSAFEPATH": "1", ENV_JOB_NAME: self.job.name, ENV_ATTEMPT: str(attempt)}
            env.pop(ENV_JOB_NAMESPACE, None)  # local: progress goes to progress.json, not to a cluster
            with open(log_path, "ab") as log:
                self.child = subprocess.Popen(trainer_command(self.files, gpus), stdout=log, stderr=subprocess.STDOUT,
                                              cwd=state.get("cwd") or None, env=env, stdin=subprocess.DEVNULL)
                state.update(phase="Running", childPid=self.child.pid)
                add_condition(state, CONDITION_RUNNING, "Running", f"attempt {attempt} started")
                write_state(self.files, state)
                if self.suspend_requested.is_set():  # SIGTERM arrived while starting
                    self.child.send_signal(signal.SIGTERM)
                code = self.child.wait()
            state = read_state(self.files)
            state.update(childPid=None, exitCode=code)
            if self.deadline_hit.is_set():
                return self._finish(state, "Failed", "DeadlineExceeded",
                                    f"activeDeadlineSeconds ({policy.active_deadline_seconds}) exceeded")
            outcome = classify_exit(code)
            if outcome is Outcome.SUCCEEDED:
                state["modelURI"] = self.job.spec.output.uri
                return self._finish(state, "Succeeded", "Succeeded", "training finished; model exported")
            if self.suspend_requested.is_set():
                state["phase"] = "Suspended"
                add_condition(state, CONDITION_SUSPENDED, "Suspended", suspend_message(code))
                write_state(self.files, state)
                return 0
            restarts = int(state.get("restarts", 0))
            decision = after_failed_attempt(outcome, restarts, policy.max_restarts)
            if not decision.retry:
                message = self._failure_message(code)
                reason = "ConfigurationError"
                if outcome is Outcome.CRASH:
                    message = f"restart budget ({policy.max_restarts}) exhausted; " + message
                    reason = "RestartBudgetExhausted"
                return self._finish(state, "Failed", reason, message)
            state["restarts"] = decision.restarts
            state["attempt"] = attempt + 1
            state["phase"] = "Restarting"
            add_condition(state, CONDITION_RESTARTING, "Restarting",
                          f"attempt {attempt} {exit_text(code)}; resuming from the newest checkpoint")
            write_state(self.files, state)

    def _failure_message(self, code: int) -> str:
        if self.files.termination_log.exists():
            text = self.files.termination_log.read_text(errors="replace").strip()
            if text:
                return text
        lines = tail(self.files.log(int(read_state(self.files).get("attempt", 1))), 5)
        return f"trainer {exit_text(code)}" + (": " + " | ".join(lines) if lines else "")

    def _finish(self, state: dict, phase: str, reason: str, message: str) -> int:
        state["phase"] = phase
        state["completionTime"] = now_rfc3339()
        add_condition(state, phase, reason, message)
        write_state(self.files, state)
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rarl.backends.supervisor JOB_DIR", file=sys.stderr)
        return 2
    return Supervisor(Path(args[0])).run()


if __name__ == "__main__":
    sys.exit(main())
