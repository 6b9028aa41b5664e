"""The words the operator, the local backend, the trainer and the CLI share.

Phases, condition types, labels, the trainer's exit codes and the retry policy are
declared here once (as JobSet declares its labels and conditions in its API package);
every package imports them rather than writing its own copy.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from rarl.errors import InvalidArgument

# --------------------------------------------------------------------------- phases

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended", "Restarting"]

PHASES: tuple[Phase, ...] = ("Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed")
"""Every phase, in lifecycle order."""

TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})
"""A job in one of these never runs again (delete it to run it afresh)."""

ACTIVE_PHASES: frozenset[str] = frozenset({"Pending", "Running", "Restarting"})
"""A trainer attempt exists or is being created."""


def phase_set(value: str | Iterable[str], field: str = "until") -> frozenset[str]:
    """Phase names from one name, a comma-separated string or an iterable; InvalidArgument names a bad one."""
    if not isinstance(value, (str, Iterable)):
        raise InvalidArgument(f"{field}: expected a phase, 'A,B' or a set of phases, got {type(value).__name__}")
    names = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in PHASES]
    if unknown or not names:
        raise InvalidArgument(f"{field}: {', '.join(map(repr, unknown)) or 'nothing'} is not a phase; "
                              f"use one or more of: {', '.join(PHASES)}")
    return frozenset(names)


# --------------------------------------------------------------------------- conditions

CONDITION_CREATED = "Created"
"""True once the first attempt's children were created."""
CONDITION_RUNNING = "Running"
"""True while at least one trainer pod (or the local trainer) runs."""
CONDITION_RESTARTING = "Restarting"
"""True between a failed attempt and the next one's start."""
CONDITION_SUSPENDED = "Suspended"
"""True while ``runPolicy.suspend`` holds the job; False with reason Resumed after it is lifted."""
CONDITION_SUCCEEDED = "Succeeded"
"""True when the trainer exited 0 after exporting the model."""
CONDITION_FAILED = "Failed"
"""True when the job ended without a model (configuration error, restart budget, deadline)."""
CONDITION_INVALID_SPEC = "InvalidSpec"
"""True when the stored spec does not validate; the job fails without starting."""
REASON_INVALID_SPEC = "InvalidSpec"
"""Reason of ``Failed``: the stored spec does not validate."""
REASON_CONFIGURATION_ERROR = "ConfigurationError"
"""Reason of ``Failed``: the trainer exited 2 (a configuration or data problem; retrying cannot help)."""
REASON_RESTART_BUDGET_EXHAUSTED = "RestartBudgetExhausted"
"""Reason of ``Failed``: an attempt crashed after ``runPolicy.maxRestarts`` restarts were spent."""
REASON_DEADLINE_EXCEEDED = "DeadlineExceeded"
"""Reason of ``Failed``: ``runPolicy.activeDeadlineSeconds`` passed since ``status.startTime``."""
REASON_RUNNER_DIED = "RunnerDied"
"""Reason of ``Failed``, local backend only: the supervisor process of the job died (killed, out of memory)."""
FAILURE_REASONS = (REASON_INVALID_SPEC, REASON_CONFIGURATION_ERROR, REASON_RESTART_BUDGET_EXHAUSTED,
                   REASON_DEADLINE_EXCEEDED, REASON_RUNNER_DIED)
"""Every reason a ``Failed`` condition can carry."""
REASON_CHILD_NOT_OWNED = "ChildNotOwned"
"""Reason of ``Created`` False (and a Warning Event): a child's name is taken by an object without this
RARLJob's ownerReference. The operator does not use it (it may be another user's ConfigMap or RoleBinding)
and does not fail the job: it retries at every resync, so the job proceeds once the object is deleted or
renamed (``runPolicy.activeDeadlineSeconds`` bounds the wait)."""

# --------------------------------------------------------------------------- labels

LABEL_JOB = "rarl.dev/job-name"
"""On every child (batch Job, pods, ConfigMap, Service): the owning RARLJob's name."""
LABEL_ATTEMPT = "rarl.dev/attempt"
"""On every per-attempt child: the attempt number (1, 2, ...)."""
ANNOTATION_RESTARTS = "rarl.dev/restarts"
"""On an attempt's batch Job: the restart count when it was created (read back after an operator restart)."""
ANNOTATION_TRAINING_SETTINGS = "rarl.dev/training-settings"
"""On an attempt's batch Job: a digest per training-settings field the job was started with (JSON)."""
ANNOTATION_OPERATOR_RECORD = "rarl.dev/operator-record"
"""On the RARLJob: the operator's own copy of ``OPERATOR_STATUS_FIELDS`` (JSON, with the job's uid). The
trainer's Role may patch the status subresource but not the object's metadata, so the operator decides on
this copy and rewrites any of those status fields that differs from it."""
OPERATOR_STATUS_FIELDS = ("phase", "conditions", "attempt", "restarts", "startTime", "completionTime")
"""The status fields the operator decides on (the phase switch, restart budget, deadline, TTL) or reports
(conditions), and keeps a record of; ``modelURI`` and ``totalSteps`` are the operator's too. The trainer
writes only progress: stage, step, reward, metrics, latestCheckpoint and etaSeconds
(``rarl.progress_k8s.status_patch``). One writer per field."""
TOOLING_METADATA_PREFIXES = ("kopf.zalando.org/", "kubectl.kubernetes.io/", "rarl.dev/")
"""Label and annotation prefixes of tooling state, not user intent: never copied from a RARLJob to its children."""

# --------------------------------------------------------------------------- images

DEFAULT_TRAINER_IMAGE = "ghcr.io/rarl-dev/rarl-trainer:0.1.0"
"""The trainer image used when ``spec.resources.image`` is empty and the operator sets none."""

# --------------------------------------------------------------------------- exit codes


class ExitCode(enum.IntEnum):
    """What the trainer's exit code means; the operator and the local runner act on it alike."""

    OK = 0
    """Trained and exported the model."""
    CRASH = 1
    """Anything unexpected; any code not listed here counts as a crash too."""
    CONFIG = 2
    """A configuration or data problem the user must fix: retrying cannot help."""
    INTERRUPTED = 3
    """Stopped by SIGTERM after writing a checkpoint (suspend, preemption, eviction)."""


class Outcome(enum.Enum):
    """The class of an ended attempt."""

    SUCCEEDED = "succeeded"
    CONFIG_ERROR = "config"
    DISRUPTION = "disruption"  # interrupted or evicted: retried without using the restart budget
    CRASH = "crash"  # retried while the restart budget lasts


def classify_exit(code: int) -> Outcome:
    """The outcome of one trainer exit code (a disruption seen by the kubelet is classified by the operator)."""
    if code == ExitCode.OK:
        return Outcome.SUCCEEDED
    if code == ExitCode.CONFIG:
        return Outcome.CONFIG_ERROR
    if code == ExitCode.INTERRUPTED:
        return Outcome.DISRUPTION
    return Outcome.CRASH


@dataclass(frozen=True)
class RetryDecision:
    """What to do after a failed attempt: give up, or retry with this restart count."""

    retry: bool
    restarts: int


def after_failed_attempt(outcome: Outcome, restarts: int, max_restarts: int) -> RetryDecision:
    """The retry policy of both backends.

    A configuration error fails at once; a disruption is retried and costs nothing; a
    crash is retried while ``restarts < max_restarts`` and costs one restart.
    """
    if outcome is Outcome.CONFIG_ERROR:
        return RetryDecision(retry=False, restarts=restarts)
    if outcome is Outcome.DISRUPTION:
        return RetryDecision(retry=True, restarts=restarts)
    if outcome is Outcome.CRASH:
        if restarts >= max_restarts:
            return RetryDecision(retry=False, restarts=restarts)
        return RetryDecision(retry=True, restarts=restarts + 1)
    raise ValueError(f"{outcome} is not a failure")


# --------------------------------------------------------------------------- trainer command line

TRAINER_MODULE = "rarl_trainer"
"""``python -m rarl_trainer``: one trainer process."""
TRAINER_LAUNCHER = "rarl_trainer.entrypoint"
"""rarl's torchrun launcher: plain torchrun turns every worker failure into exit code 1, which would hide the
trainer's exit codes (2 = configuration error, 3 = interrupted after a checkpoint)."""


def trainer_cli_args(config: str, run_dir: str) -> list[str]:
    """The trainer's arguments after ``python``, torchrun or the launcher, on both backends: resume from the
    newest checkpoint if there is one."""
    return ["-m", TRAINER_MODULE, "--config", config, "--resume", "auto", "--run-dir", run_dir]


# --------------------------------------------------------------------------- trainer environment

ENV_JOB_NAME = "RARL_JOB_NAME"
ENV_JOB_NAMESPACE = "RARL_JOB_NAMESPACE"
"""Set in cluster pods only: the trainer then reports progress to the RARLJob's status."""
ENV_ATTEMPT = "RARL_ATTEMPT"
ENV_TERMINATION_LOG = "RARL_TERMINATION_LOG"
"""Where the trainer writes its last words (the kubelet's terminationMessagePath, or a local file)."""
ENV_S3_ENDPOINT = "RARL_S3_ENDPOINT"
ENV_S3_PATH_STYLE = "RARL_S3_PATH_STYLE"
"""The S3 endpoint and addressing the operator passes to trainer pods (when the spec leaves them open)."""
