"""The job lifecycle of both backends, as one explicit phase switch (like KubeRay's RayJob controller).

``decide(observed) -> Plan`` is a pure function of what exists right now: the
job (spec, status) and its attempts' runners and trainer processes. The operator
observes batch Jobs and pods (``rarl_operator.reconciler``), the local supervisor
observes its child process (``rarl.backends.supervisor``); both carry the same
plan out, so phases, reasons, conditions and events are the same on both. It
remembers nothing between calls, so any number of repeated or
concurrent-after-restart calls converge on the same plan; the executor carries
the plan out idempotently.

``status`` is the API's status shape (``RARLJobStatus`` as camelCase JSON), on
the cluster and in a local job's ``state.json`` alike; the fields named in
``OPERATOR_STATUS_FIELDS`` and ``modelURI`` are written only from a plan.

Write-ahead rule: a new attempt is recorded in ``status.attempt`` in the same
plan that creates its runner; the next call reads the larger of status.attempt and
the newest existing runner, so a crash between the two never yields a second one,
and a restart is counted once (the count is recomputed, never incremented twice).

On Kubernetes ``Observed.status`` is the trusted status: the reconciler takes the
fields the operator decides on from its own record, not from what the trainer
may have patched; ``jobs`` and ``pods`` are only the children this RARLJob owns
(ownerReferences), not whatever carries its label.
"""

from __future__ import annotations

import datetime as dt
import signal
from dataclasses import dataclass, field
from typing import Any

from rarl.api.settings import training_settings_digest
from rarl.api.types import RARLJobSpec
from rarl.api.uri import redact_uri
from rarl.api.vocabulary import (
    CONDITION_CREATED,
    CONDITION_FAILED,
    CONDITION_INVALID_SPEC,
    CONDITION_RESTARTING,
    CONDITION_RUNNING,
    CONDITION_SUCCEEDED,
    CONDITION_SUSPENDED,
    REASON_CHILD_NOT_OWNED,
    REASON_CONFIGURATION_ERROR,
    REASON_DEADLINE_EXCEEDED,
    REASON_INVALID_SPEC,
    REASON_RESTART_BUDGET_EXHAUSTED,
    ExitCode,
    Outcome,
    Phase,
    after_failed_attempt,
    classify_exit,
)


@dataclass(frozen=True)
class PodView:
    """One trainer process of an attempt: a pod on Kubernetes, the child process locally."""

    name: str
    attempt: int
    phase: str = "Pending"
    exit_codes: tuple[int, ...] = ()
    message: str = ""  # the trainer's termination message (or its log's tail)
    disrupted: bool = False  # DisruptionTarget condition, eviction or preemption
    owners: tuple[str, ...] = ()  # ownerReference uids (the Job that created the pod)


@dataclass(frozen=True)
class JobView:
    """The runner of one attempt: its batch Job on Kubernetes, the supervisor's record of it locally."""

    name: str
    attempt: int
    complete: bool = False
    failed: bool = False
    failed_reason: str = ""
    restarts: int = 0  # the restart count recorded when this attempt was created
    deleting: bool = False
    started_with: dict[str, str] | None = None  # the training-settings digest recorded on it (None: none)
    uid: str = ""
    owners: tuple[str, ...] = ()  # ownerReference uids (the RARLJob that created it)


@dataclass
class Observed:
    """Everything ``decide`` may look at."""

    name: str
    spec: RARLJobSpec | None
    problems: list[str]
    status: dict[str, Any]
    generation: int | None
    now: dt.datetime
    jobs: dict[int, JobView] = field(default_factory=dict)
    pods: dict[int, list[PodView]] = field(default_factory=dict)


@dataclass
class Plan:
    """What to do: the status to have, the children to ensure or delete, events to post."""

    status: dict[str, Any]
    ensure_attempt: int | None = None  # create the children of this attempt (idempotent)
    restarts_for_attempt: int = 0
    started_with: dict[str, str] | None = None  # the digest to record on that attempt (None: the spec's)
    delete_jobs: list[str] = field(default_factory=list)
    delete_self: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue_after: float | None = None


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> dt.datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def set_condition(conds: list[dict], ctype: str, status: str, reason: str, message: str, now: dt.datetime) -> None:
    """Upsert one condition; lastTransitionTime moves only when its status flips."""
    for cond in conds:
        if cond.get("type") == ctype:
            if cond.get("status") != status:
                cond["lastTransitionTime"] = rfc3339(now)
            cond.update(status=status, reason=reason, message=message)
            return
    conds.append({"type": ctype, "status": status, "reason": reason, "message": message,
                  "lastTransitionTime": rfc3339(now)})


def exit_text(code: int) -> str:
    """How an exit code reads: a negative one (a local child process) is the signal that killed it."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def classify(job: JobView, pods: list[PodView]) -> tuple[Outcome, str]:
    """Why an attempt failed: a config error fails at once, a disruption is free, a crash costs a restart.

    Each exit code means what ``classify_exit`` says; a pod the kubelet marked disrupted is a disruption
    whatever its code.
    """
    def exited(outcome: Outcome) -> PodView | None:
        return next((p for p in pods if any(classify_exit(c) is outcome for c in p.exit_codes)), None)

    if (pod := exited(Outcome.CONFIG_ERROR)) is not None:
        return Outcome.CONFIG_ERROR, pod.message.strip() or "trainer exited with code 2 (configuration error)"
    for pod in pods:
        if pod.disrupted:
            return Outcome.DISRUPTION, f"pod {pod.name} was disrupted (evicted or preempted)"
    if exited(Outcome.DISRUPTION) is not None:
        return Outcome.DISRUPTION, "trainer was interrupted after a checkpoint (exit code 3)"
    codes = sorted({c for pod in pods for c in pod.exit_codes if c != ExitCode.OK})
    detail = next((p.message.strip() for p in pods if p.message.strip() and p.exit_codes), "")
    what = ", ".join(map(exit_text, codes)) if codes else (job.failed_reason or "the Job failed")
    return Outcome.CRASH, f"trainer crashed ({what})" + (f": {detail}" if detail else "")


class _Ctx:
    """Mutable working copy of the operator-owned status fields."""

    def __init__(self, obs: Observed):
        self.obs = obs
        st = obs.status
        self.status: dict[str, Any] = {
            "phase": st.get("phase"),
            "conditions": [dict(c) for c in st.get("conditions") or []],
            "restarts": int(st.get("restarts") or 0),
            "attempt": int(st.get("attempt") or 0),
        }
        for key in ("startTime", "completionTime", "modelURI"):
            if st.get(key) is not None:
                self.status[key] = st[key]
        if obs.generation is not None:
            self.status["observedGeneration"] = obs.generation
        if obs.spec is not None and "totalSteps" not in st:
            self.status["totalSteps"] = obs.spec.total_steps()
        self.plan = Plan(status=self.status)

    def cond(self, ctype: str, status: str, reason: str, message: str) -> None:
        set_condition(self.status["conditions"], ctype, status, reason, message, self.obs.now)

    def transition(self, phase: Phase, reason: str, message: str, *, warning: bool = False) -> None:
        if self.status["phase"] != phase:
            self.plan.events.append(("Warning" if warning else "Normal", reason, message))
        self.status["phase"] = phase

    def finish(self, phase: Phase, reason: str, message: str) -> None:
        ok = phase == "Succeeded"
        self.transition(phase, reason, message, warning=not ok)
        self.status.setdefault("completionTime", rfc3339(self.obs.now))
        self.cond(CONDITION_RUNNING, "False", reason, message)
        self.cond(CONDITION_SUCCEEDED if ok else CONDITION_FAILED, "True", reason, message)
        self.delete_live_jobs()

    def delete_live_jobs(self) -> None:
        for job in self.obs.jobs.values():
            if not job.deleting and not job.complete and not job.failed:
                self.plan.delete_jobs.append(job.name)

    def new_attempt(self, attempt: int, restarts: int) -> None:
        self.status["attempt"] = attempt
        self.status["restarts"] = restarts
        self.status.setdefault("startTime", rfc3339(self.obs.now))
        self.plan.ensure_attempt = attempt
        self.plan.restarts_for_attempt = restarts


def decide(obs: Observed) -> Plan:
    """The phase switch: one case per phase, each a sequence of named checks."""
    ctx = _Ctx(obs)
    ctx.plan.started_with = _started_with(obs)
    match ctx.status["phase"]:
        case "Succeeded" | "Failed":
            _finished(ctx)
        case _ if obs.spec is None:
            _invalid(ctx)
        case None:
            _new(ctx)
        case "Pending":
            _pending(ctx)
        case "Running":
            _running(ctx)
        case "Restarting":
            _restarting(ctx)
        case "Suspended":
            _suspended(ctx)
        case _:  # no other phase passes the CRD's enum; an unchecked API is treated as Pending
            _pending(ctx)
    return ctx.plan


def fail(obs: Observed, reason: str, message: str) -> Plan:
    """End the job as Failed for a cause the switch cannot observe (the local runner process died).

    The same conditions, completionTime and Warning event as any other failure.
    """
    ctx = _Ctx(obs)
    ctx.finish("Failed", reason, message)
    return ctx.plan


# --------------------------------------------------------------------------- one function per phase


def _invalid(ctx: _Ctx) -> None:
    """A spec that does not validate fails the job before any child exists."""
    message = "; ".join(ctx.obs.problems) or "invalid spec"
    ctx.cond(CONDITION_INVALID_SPEC, "True", REASON_INVALID_SPEC, message)
    ctx.finish("Failed", REASON_INVALID_SPEC, message)


def _finished(ctx: _Ctx) -> None:
    """Succeeded or Failed: stop any Job still running (it may have been missing from the cache), then the TTL."""
    ctx.delete_live_jobs()
    spec = ctx.obs.spec
    ttl = spec.run_policy.ttl_seconds_after_finished if spec is not None else None
    done = parse_time(ctx.status.get("completionTime"))
    if ttl is None or done is None:
        return
    left = (done + dt.timedelta(seconds=ttl) - ctx.obs.now).total_seconds()
    if left <= 0:
        ctx.plan.delete_self = True
        ctx.plan.events.append(("Normal", "Deleted", f"ttlSecondsAfterFinished={ttl} elapsed"))
    else:
        ctx.plan.requeue_after = left


def _new(ctx: _Ctx) -> None:
    """No phase yet: create the first attempt, or adopt the Job a lost status forgot."""
    job = _adopt_newest_attempt(ctx)
    _report_immutable_changes(ctx)
    if _run_policy_stops(ctx):
        return
    if _needs_first_attempt(ctx) or job is None:
        _create_first_attempt(ctx)
        return
    attempt = ctx.status["attempt"]
    if _job_missing(job):
        _recreate_attempt(ctx)
        ctx.transition("Pending", "Created", f"created attempt {attempt}")
        return
    if not _follow_attempt(ctx):
        ctx.transition("Pending", "Created", f"attempt {attempt} waits for its pods")


def _run_policy_stops(ctx: _Ctx) -> bool:
    """runPolicy decides before the attempt does: a suspend request, or an exceeded deadline."""
    if _suspend_requested(ctx):
        _suspend(ctx)
        return True
    if _deadline_exceeded(ctx):
        _fail_deadline(ctx)
        return True
    return False


def _pending(ctx: _Ctx) -> None:
    """The attempt's Job exists (or is being created); its pods are not running yet."""
    _in_flight(ctx)


def _running(ctx: _Ctx) -> None:
    """At least one trainer pod of the attempt ran when last observed."""
    _in_flight(ctx)


def _restarting(ctx: _Ctx) -> None:
    """A failed attempt was followed by the next one, whose pods are not running yet."""
    _in_flight(ctx)


def _in_flight(ctx: _Ctx) -> None:
    """Pending, Running and Restarting run the same checks: each outcome of the attempt names the next phase."""
    job = _adopt_newest_attempt(ctx)
    _report_immutable_changes(ctx)
    if job is not None and _attempt_succeeded(job):  # before suspend or deadline: the model is exported
        _succeed(ctx, ctx.status["attempt"])
        return
    if _run_policy_stops(ctx):
        return
    if _needs_first_attempt(ctx):
        _create_first_attempt(ctx)
        return
    if _job_missing(job):
        _recreate_attempt(ctx)
        return
    _follow_attempt(ctx)


def _suspended(ctx: _Ctx) -> None:
    """Held by runPolicy.suspend: no Job runs; lifting it resumes as a new attempt at no restart cost."""
    obs = ctx.obs
    _report_immutable_changes(ctx)
    if _suspend_requested(ctx):
        ctx.delete_live_jobs()  # a Job that survived a crash mid-suspend
        _note_how_the_attempt_stopped(ctx)
        return
    attempt = max(ctx.status["attempt"], max(obs.jobs, default=0)) + 1
    ctx.status["startTime"] = rfc3339(obs.now)  # like a Kubernetes Job: the deadline clock restarts on resume
    ctx.new_attempt(attempt, ctx.status["restarts"])
    ctx.cond(CONDITION_SUSPENDED, "False", "Resumed", f"resumed as attempt {attempt} from the newest checkpoint")
    ctx.transition("Pending", "Resumed", f"resumed as attempt {attempt}")


# --------------------------------------------------------------------------- checks


def _spec(ctx: _Ctx) -> RARLJobSpec:
    """The validated spec (every phase function but ``_finished`` runs only with one)."""
    spec = ctx.obs.spec
    if spec is None:
        raise ValueError("decide() routes a job without a valid spec to _invalid")
    return spec


def _adopt_newest_attempt(ctx: _Ctx) -> JobView | None:
    """The newest Job wins over a stale status.attempt, and its recorded restart count over a smaller one."""
    st, jobs = ctx.status, ctx.obs.jobs
    st["attempt"] = max(st["attempt"], max(jobs, default=0))
    job = jobs.get(st["attempt"])
    if job is not None:
        st["restarts"] = max(st["restarts"], job.restarts)
    return job


def _suspend_requested(ctx: _Ctx) -> bool:
    return _spec(ctx).run_policy.suspend


def _deadline_exceeded(ctx: _Ctx) -> bool:
    """activeDeadlineSeconds since startTime has passed; otherwise the reconcile is requeued for that moment."""
    deadline = _spec(ctx).run_policy.active_deadline_seconds
    started = parse_time(ctx.status.get("startTime"))
    if deadline is None or started is None:
        return False
    left = (started + dt.timedelta(seconds=deadline) - ctx.obs.now).total_seconds()
    if left <= 0:
        return True
    ctx.plan.requeue_after = left
    return False


def _needs_first_attempt(ctx: _Ctx) -> bool:
    """No attempt was ever recorded, in the status or as a Job."""
    return ctx.status["attempt"] == 0


def _job_missing(job: JobView | None) -> bool:
    """The recorded attempt has no Job: write-ahead recorded it, or someone deleted it."""
    return job is None or job.deleting


def _attempt_succeeded(job: JobView) -> bool:
    return job.complete


def _attempt_failed(job: JobView) -> bool:
    return job.failed


def _running_pods(pods: list[PodView]) -> int:
    return sum(p.phase == "Running" for p in pods)


def _started_with(obs: Observed) -> dict[str, str] | None:
    """The training-settings digest recorded on the newest Job that has one (None: no Job recorded it)."""
    for attempt in sorted(obs.jobs, reverse=True):
        if obs.jobs[attempt].started_with is not None:
            return obs.jobs[attempt].started_with
    return None


def _immutable_fields_changed(ctx: _Ctx) -> list[str]:
    """The training-settings fields whose value differs from what the job was started with."""
    started_with = ctx.plan.started_with
    if started_with is None:
        return []
    now = training_settings_digest(_spec(ctx))
    return [f"spec.{field}" for field, digest in now.items() if started_with.get(field, digest) != digest]


# --------------------------------------------------------------------------- after creating children


def child_not_owned(plan: Plan, attempt: int, blocker: str, now: dt.datetime) -> str:
    """A child's name is taken by an object this job does not own: say which, and wait (see REASON_CHILD_NOT_OWNED).

    Waiting, not failing: the user can delete or rename the object and the next resync proceeds.
    Returns the message (the reconciler posts it as a Warning Event once per blocker).
    """
    message = (f"{blocker}: the operator does not use it, so attempt {attempt} waits; "
               "delete or rename that object and the job proceeds")
    set_condition(plan.status["conditions"], CONDITION_CREATED, "False", REASON_CHILD_NOT_OWNED, message, now)
    return message


def children_created(plan: Plan, attempt: int, now: dt.datetime) -> None:
    """The children of the attempt exist and are ours: a ChildNotOwned wait is over."""
    conds = plan.status["conditions"]
    before = next((c for c in conds if c.get("type") == CONDITION_CREATED), {})
    if before.get("reason") == REASON_CHILD_NOT_OWNED:
        message = f"created attempt {attempt}"
        set_condition(conds, CONDITION_CREATED, "True", "Created", message, now)
        plan.events.append(("Normal", "Created", message))


# --------------------------------------------------------------------------- actions


def _report_immutable_changes(ctx: _Ctx) -> None:
    """Warn once per spec generation about changed training settings; the job keeps the ones it started with.

    The CRD's ``self == oldSelf`` rules make the API server reject such an update; this covers
    an API server without them (and a field added after creation, which a transition rule lets pass).
    """
    if ctx.obs.generation is None or ctx.obs.generation == ctx.obs.status.get("observedGeneration"):
        return
    changed = _immutable_fields_changed(ctx)
    if changed:
        ctx.plan.events.append((
            "Warning", "ImmutableFieldChanged",
            f"{', '.join(changed)} changed after the job started and are immutable once the job exists: "
            f"attempt {ctx.status['attempt']} and later attempts keep the settings the job was started with "
            "(to train the new ones, create a job with a new name)"))


def _suspend(ctx: _Ctx) -> None:
    ctx.delete_live_jobs()
    attempt = ctx.status["attempt"]
    msg = (f"attempt {attempt} stopped; the trainer checkpoints on SIGTERM" if attempt
           else "created suspended (spec.runPolicy.suspend)")
    ctx.cond(CONDITION_RUNNING, "False", "Suspended", msg)
    ctx.cond(CONDITION_SUSPENDED, "True", "Suspended", msg)
    ctx.transition("Suspended", "Suspended", msg)
    _note_how_the_attempt_stopped(ctx)  # the trainers may have exited already (locally they have)


def _note_how_the_attempt_stopped(ctx: _Ctx) -> None:
    """Once the suspended attempt's trainers have exited: say whether they checkpointed (exit code 3) or not."""
    attempt = ctx.status["attempt"]
    codes = sorted({c for pod in ctx.obs.pods.get(attempt, []) for c in pod.exit_codes})
    if not codes:
        return
    if all(classify_exit(c) is Outcome.DISRUPTION for c in codes):
        msg = f"attempt {attempt} suspended after a checkpoint"
    else:
        msg = f"attempt {attempt} suspended (trainer {', '.join(map(exit_text, codes))})"
    ctx.cond(CONDITION_SUSPENDED, "True", "Suspended", msg)


def _fail_deadline(ctx: _Ctx) -> None:
    deadline = _spec(ctx).run_policy.active_deadline_seconds
    ctx.finish("Failed", REASON_DEADLINE_EXCEEDED, f"activeDeadlineSeconds={deadline} exceeded")


def _create_first_attempt(ctx: _Ctx) -> None:
    attempt = max(ctx.status["attempt"], 1)
    ctx.new_attempt(attempt, ctx.status["restarts"])
    ctx.cond(CONDITION_CREATED, "True", "Created", f"created attempt {attempt}")
    ctx.transition("Pending", "Created", f"created attempt {attempt} ({_spec(ctx).resources.nodes} node(s))")


def _recreate_attempt(ctx: _Ctx) -> None:
    """(Re)create the recorded attempt's children: creating is idempotent, the status already names it."""
    st = ctx.status
    ctx.plan.ensure_attempt = st["attempt"]
    ctx.plan.restarts_for_attempt = st["restarts"]
    st.setdefault("startTime", rfc3339(ctx.obs.now))


def _follow_attempt(ctx: _Ctx) -> bool:
    """The attempt's Job and pods name the next phase; False when nothing moved (no pod runs yet)."""
    attempt = ctx.status["attempt"]
    job = ctx.obs.jobs[attempt]
    pods = ctx.obs.pods.get(attempt, [])
    if _attempt_succeeded(job):
        _succeed(ctx, attempt)
    elif _attempt_failed(job):
        _failed_attempt(ctx, attempt, job, pods)
    elif _running_pods(pods):
        _mark_running(ctx, attempt, pods)
    else:
        return False
    return True


def _succeed(ctx: _Ctx, attempt: int) -> None:
    uri = _spec(ctx).output.uri
    ctx.status["modelURI"] = uri
    ctx.cond(CONDITION_RESTARTING, "False", "Succeeded", "")
    ctx.finish("Succeeded", "Succeeded", f"attempt {attempt} completed; model at {redact_uri(uri)}")


def _mark_running(ctx: _Ctx, attempt: int, pods: list[PodView]) -> None:
    msg = f"attempt {attempt}: {_running_pods(pods)}/{_spec(ctx).resources.nodes} node(s) running"
    ctx.cond(CONDITION_RUNNING, "True", "Running", msg)
    ctx.cond(CONDITION_RESTARTING, "False", "Running", msg)
    ctx.transition("Running", "Running", msg)


def _failed_attempt(ctx: _Ctx, attempt: int, job: JobView, pods: list[PodView]) -> None:
    """The retry policy of ``rarl.api.vocabulary`` decides: fail, or start the next attempt."""
    max_restarts = _spec(ctx).run_policy.max_restarts
    outcome, message = classify(job, pods)
    decision = after_failed_attempt(outcome, ctx.status["restarts"], max_restarts)
    if not decision.retry:
        if outcome is Outcome.CONFIG_ERROR:  # the user's to fix, whichever attempt met it
            ctx.finish("Failed", REASON_CONFIGURATION_ERROR, message)
        else:
            ctx.finish("Failed", REASON_RESTART_BUDGET_EXHAUSTED,
                       f"attempt {attempt}: {message}; restart budget exhausted (maxRestarts={max_restarts})")
        return
    message = f"attempt {attempt}: {message}"
    nxt = attempt + 1
    ctx.new_attempt(nxt, decision.restarts)
    why = ("not counted (disruption)" if outcome is Outcome.DISRUPTION
           else f"restart {decision.restarts}/{max_restarts}")
    msg = f"{message}; starting attempt {nxt} from the newest checkpoint, {why}"
    ctx.cond(CONDITION_RUNNING, "False", "Restarting", msg)
    ctx.cond(CONDITION_RESTARTING, "True", "Restarting", msg)
    ctx.plan.events.append(("Warning", "Restarting", msg))
    ctx.status["phase"] = "Restarting"
