"""The lifecycle as one explicit phase switch (like KubeRay's RayJob controller).

``decide(observed) -> Plan`` is a pure function of what exists right now: the
RARLJob (spec, status) and its child Jobs and pods. It remembers nothing between
calls, so any number of repeated or concurrent-after-restart calls converge on
the same plan; the executor (``reconciler``) carries the plan out idempotently.

Write-ahead rule: a new attempt is recorded in ``status.attempt`` in the same
plan that creates its Job; the next call reads the larger of status.attempt and
the newest existing Job, so a crash between the two never yields a second Job,
and a restart is counted once (the count is recomputed, never incremented twice).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from rarl.api.types import RARLJobSpec

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 3

# Failure classes of an attempt.
CONFIG_ERROR = "config"
DISRUPTION = "disruption"
CRASH = "crash"


@dataclass(frozen=True)
class PodView:
    """What the reconciler needs to know about one trainer pod."""

    name: str
    attempt: int
    phase: str = "Pending"
    exit_codes: tuple[int, ...] = ()
    message: str = ""  # the trainer's termination message (or log tail)
    disrupted: bool = False  # DisruptionTarget condition, eviction or preemption
    deleting: bool = False


@dataclass(frozen=True)
class JobView:
    """The state of one attempt's batch Job."""

    name: str
    attempt: int
    complete: bool = False
    failed: bool = False
    failed_reason: str = ""
    active: int = 0
    restarts: int = 0  # the restart count recorded when this attempt was created
    deleting: bool = False


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


def classify(job: JobView, pods: list[PodView]) -> tuple[str, str]:
    """Why an attempt failed: a config error fails at once, a disruption is free, a crash costs a restart."""
    for pod in pods:
        if EXIT_CONFIG in pod.exit_codes:
            return CONFIG_ERROR, pod.message.strip() or f"pod {pod.name} exited with code 2 (configuration error)"
    for pod in pods:
        if pod.disrupted:
            return DISRUPTION, f"pod {pod.name} was disrupted (evicted or preempted)"
    for pod in pods:
        if EXIT_INTERRUPTED in pod.exit_codes:
            return DISRUPTION, f"pod {pod.name} was interrupted after a checkpoint (exit code 3)"
    codes = sorted({c for pod in pods for c in pod.exit_codes if c != 0})
    detail = next((p.message.strip() for p in pods if p.message.strip() and p.exit_codes), "")
    what = f"exit code {', '.join(map(str, codes))}" if codes else (job.failed_reason or "the Job failed")
    return CRASH, f"trainer crashed ({what})" + (f": {detail}" if detail else "")


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

    def transition(self, phase: str, reason: str, message: str, *, warning: bool = False) -> None:
        if self.status["phase"] != phase:
            self.plan.events.append(("Warning" if warning else "Normal", reason, message))
        self.status["phase"] = phase

    def finish(self, phase: str, reason: str, message: str) -> None:
        ok = phase == "Succeeded"
        self.transition(phase, reason, message, warning=not ok)
        self.status.setdefault("completionTime", rfc3339(self.obs.now))
        self.cond("Running", "False", reason, message)
        self.cond(phase, "True", reason, message)
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
    """The phase switch."""
    ctx = _Ctx(obs)
    phase = ctx.status["phase"]
    if phase in ("Succeeded", "Failed"):
        _finished(ctx)
    elif obs.spec is None:
        _invalid(ctx)
    elif phase == "Suspended":
        _suspended(ctx)
    else:  # None (new), Pending, Running, Restarting
        _active(ctx)
    return ctx.plan


def _invalid(ctx: _Ctx) -> None:
    message = "; ".join(ctx.obs.problems) or "invalid spec"
    ctx.cond("InvalidSpec", "True", "InvalidSpec", message)
    ctx.finish("Failed", "InvalidSpec", message)


def _finished(ctx: _Ctx) -> None:
    """Terminal: stop any Job still running (it may have been missing from the cache), then the TTL."""
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


def _suspended(ctx: _Ctx) -> None:
    obs, spec = ctx.obs, ctx.obs.spec
    assert spec is not None
    if spec.run_policy.suspend:
        ctx.delete_live_jobs()  # a Job that survived a crash mid-suspend
        return
    attempt = max(ctx.status["attempt"], max(obs.jobs, default=0)) + 1
    ctx.status["startTime"] = rfc3339(obs.now)  # like a Kubernetes Job: the deadline clock restarts on resume
    ctx.new_attempt(attempt, ctx.status["restarts"])
    ctx.cond("Suspended", "False", "Resumed", f"resumed as attempt {attempt} from the newest checkpoint")
    ctx.transition("Pending", "Resumed", f"resumed as attempt {attempt}")


def _active(ctx: _Ctx) -> None:
    obs, spec, st = ctx.obs, ctx.obs.spec, ctx.status
    assert spec is not None
    attempt = max(st["attempt"], max(obs.jobs, default=0))
    job = obs.jobs.get(attempt)
    st["attempt"] = attempt  # the newest Job wins over a stale status
    if job is not None:
        st["restarts"] = max(st["restarts"], job.restarts)

    if spec.run_policy.suspend:
        ctx.delete_live_jobs()
        msg = f"attempt {attempt} stopped; the trainer checkpoints on SIGTERM"
        ctx.cond("Running", "False", "Suspended", msg)
        ctx.cond("Suspended", "True", "Suspended", msg)
        ctx.transition("Suspended", "Suspended", msg)
        return

    deadline = spec.run_policy.active_deadline_seconds
    started = parse_time(st.get("startTime"))
    if deadline is not None and started is not None:
        left = (started + dt.timedelta(seconds=deadline) - obs.now).total_seconds()
        if left <= 0:
            ctx.finish("Failed", "DeadlineExceeded", f"activeDeadlineSeconds={deadline} exceeded")
            return
        ctx.plan.requeue_after = left

    if attempt == 0 or (job is None and st["phase"] is None):
        attempt = max(attempt, 1)
        ctx.new_attempt(attempt, st["restarts"])
        ctx.cond("Created", "True", "Created", f"created attempt {attempt}")
        ctx.transition("Pending", "Created", f"created attempt {attempt} ({spec.resources.nodes} node(s))")
        return
    if job is None or job.deleting:
        ctx.plan.ensure_attempt = attempt  # write-ahead recorded it, or someone deleted it: (re)create
        ctx.plan.restarts_for_attempt = st["restarts"]
        st.setdefault("startTime", rfc3339(obs.now))
        if st["phase"] is None:
            ctx.transition("Pending", "Created", f"created attempt {attempt}")
        return

    pods = obs.pods.get(attempt, [])
    if job.complete:
        st["modelURI"] = spec.output.uri
        ctx.cond("Restarting", "False", "Succeeded", "")
        ctx.finish("Succeeded", "Succeeded", f"attempt {attempt} completed; model at {spec.output.uri}")
        return
    if job.failed:
        _failed_attempt(ctx, attempt, job, pods)
        return
    if any(p.phase == "Running" for p in pods):
        msg = f"attempt {attempt}: {sum(p.phase == 'Running' for p in pods)}/{spec.resources.nodes} pod(s) running"
        ctx.cond("Running", "True", "Running", msg)
        ctx.cond("Restarting", "False", "Running", msg)
        ctx.transition("Running", "Running", msg)
    elif st["phase"] is None:
        ctx.transition("Pending", "Created", f"attempt {attempt} waits for its pods")


def _failed_attempt(ctx: _Ctx, attempt: int, job: JobView, pods: list[PodView]) -> None:
    spec, st = ctx.obs.spec, ctx.status
    assert spec is not None
    kind, message = classify(job, pods)
    message = f"attempt {attempt}: {message}"
    if kind == CONFIG_ERROR:
        ctx.finish("Failed", "Failed", message)
        return
    restarts = st["restarts"] + (1 if kind == CRASH else 0)
    if kind == CRASH and restarts > spec.run_policy.max_restarts:
        ctx.finish("Failed", "Failed",
                   f"{message}; restart budget exhausted (maxRestarts={spec.run_policy.max_restarts})")
        return
    nxt = attempt + 1
    ctx.new_attempt(nxt, restarts)
    why = "not counted (disruption)" if kind == DISRUPTION else f"restart {restarts}/{spec.run_policy.max_restarts}"
    msg = f"{message}; starting attempt {nxt} from the newest checkpoint, {why}"
    ctx.cond("Running", "False", "Restarting", msg)
    ctx.cond("Restarting", "True", "Restarting", msg)
    ctx.plan.events.append(("Warning", "Restarting", msg))
    st["phase"] = "Restarting"
