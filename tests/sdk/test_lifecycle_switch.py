"""The phase switch as a pure function: repeated or stale observations converge on one plan."""

from __future__ import annotations

import datetime as dt

from rarl.api.types import RARLJobSpec
from rarl.api.vocabulary import Outcome
from rarl.lifecycle import (
    JobView,
    Observed,
    PodView,
    classify,
    decide,
    rfc3339,
)

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
SPEC = RARLJobSpec.model_validate({"model": {"base": "m"}, "dataset": {"format": "synthetic"},
                                   "checkpoint": {"uri": "s3://ckpt-bucket/x"}, "output": {"uri": "s3://out-bucket/x"},
                                   "runPolicy": {"maxRestarts": 1}})


def obs(status=None, jobs=(), pods=(), spec=SPEC, now=NOW):
    o = Observed(name="x", spec=spec, problems=[], status=dict(status or {}), generation=1, now=now)
    o.jobs = {j.attempt: j for j in jobs}
    for p in pods:
        o.pods.setdefault(p.attempt, []).append(p)
    return o


def test_new_job_records_attempt_one_and_creates_it():
    plan = decide(obs())
    assert plan.ensure_attempt == 1 and plan.status["attempt"] == 1 and plan.status["phase"] == "Pending"
    assert [e[1] for e in plan.events] == ["Created"]


def test_crash_plan_is_the_same_when_repeated_on_stale_state():
    status = {"phase": "Running", "attempt": 1, "restarts": 0}
    failed = JobView(name="x-attempt-1", attempt=1, failed=True)
    pods = [PodView(name="x-attempt-1-0", attempt=1, phase="Failed", exit_codes=(1,))]
    first, again = decide(obs(status, [failed], pods)), decide(obs(status, [failed], pods))
    assert first.ensure_attempt == again.ensure_attempt == 2
    assert first.status["restarts"] == again.status["restarts"] == 1
    # Once attempt 2 exists (even if the status read is stale), nothing new is planned.
    nxt = JobView(name="x-attempt-2", attempt=2, restarts=1)
    later = decide(obs(status, [failed, nxt], pods))
    assert later.ensure_attempt is None and later.status["attempt"] == 2 and later.status["restarts"] == 1


def test_budget_and_classes():
    assert classify(JobView("j", 1, failed=True), [PodView("p", 1, exit_codes=(2,), message="bad")])[0] is Outcome.CONFIG_ERROR
    assert classify(JobView("j", 1, failed=True), [PodView("p", 1, exit_codes=(137,), disrupted=True)])[0] is Outcome.DISRUPTION
    assert classify(JobView("j", 1, failed=True), [PodView("p", 1, exit_codes=(3,))])[0] is Outcome.DISRUPTION
    assert classify(JobView("j", 1, failed=True), [])[0] is Outcome.CRASH
    status = {"phase": "Restarting", "attempt": 2, "restarts": 1}
    plan = decide(obs(status, [JobView("x-attempt-2", 2, failed=True, restarts=1)],
                      [PodView("x-attempt-2-0", 2, exit_codes=(1,))]))
    assert plan.status["phase"] == "Failed" and plan.ensure_attempt is None


def test_suspend_deletes_and_resume_advances_without_cost():
    status = {"phase": "Running", "attempt": 1, "restarts": 0}
    spec = SPEC.model_copy(update={"run_policy": SPEC.run_policy.model_copy(update={"suspend": True})})
    plan = decide(obs(status, [JobView("x-attempt-1", 1)], spec=spec))
    assert plan.status["phase"] == "Suspended" and plan.delete_jobs == ["x-attempt-1"]
    plan = decide(obs({**status, "phase": "Suspended"}))
    assert plan.ensure_attempt == 2 and plan.status["restarts"] == 0 and plan.status["phase"] == "Pending"


def test_resume_restarts_the_deadline_clock():
    """Time spent suspended never counts against activeDeadlineSeconds (a Kubernetes Job's rule)."""
    policy = SPEC.run_policy.model_copy(update={"active_deadline_seconds": 600})
    spec = SPEC.model_copy(update={"run_policy": policy})
    long_ago = rfc3339(NOW - dt.timedelta(hours=5))  # started, then suspended for hours
    plan = decide(obs({"phase": "Suspended", "attempt": 1, "restarts": 0, "startTime": long_ago}, spec=spec))
    assert plan.status["phase"] == "Pending" and plan.ensure_attempt == 2
    assert plan.status["startTime"] == rfc3339(NOW)
    running = {**plan.status, "phase": "Running"}
    job = [JobView("x-attempt-2", 2)]
    later = decide(obs(running, job, spec=spec, now=NOW + dt.timedelta(seconds=590)))
    assert later.status["phase"] == "Running" and 9 <= later.requeue_after <= 11
    late = decide(obs(running, job, spec=spec, now=NOW + dt.timedelta(seconds=601)))
    assert late.status["phase"] == "Failed" and late.delete_jobs == ["x-attempt-2"]
    # without a resume, the first start still counts
    assert decide(obs({"phase": "Running", "attempt": 1, "restarts": 0, "startTime": long_ago},
                      [JobView("x-attempt-1", 1)], spec=spec)).status["phase"] == "Failed"


def test_ttl_waits_then_deletes():
    spec = SPEC.model_copy(update={"run_policy": SPEC.run_policy.model_copy(update={"ttl_seconds_after_finished": 60})})
    done = {"phase": "Succeeded", "completionTime": "2026-11-26T11:59:30Z"}
    plan = decide(obs(done, spec=spec))
    assert not plan.delete_self and 29 <= plan.requeue_after <= 31
    assert decide(obs(done, spec=spec, now=NOW + dt.timedelta(seconds=31))).delete_self


def test_invalid_spec_fails_without_children():
    o = obs(spec=None)
    o.problems = ["spec.dataset.train: required"]
    plan = decide(o)
    assert plan.status["phase"] == "Failed" and plan.ensure_attempt is None
    conds = {c["type"]: c for c in plan.status["conditions"]}
    assert conds["InvalidSpec"]["message"] == "spec.dataset.train: required"


def _with_policy(**fields) -> RARLJobSpec:
    return SPEC.model_copy(update={"run_policy": SPEC.run_policy.model_copy(update=fields)})


def test_a_finished_attempt_wins_over_a_later_suspend_or_deadline():
    """Issue 30: the model is exported; suspending (or failing) it would retrain or lose it."""
    status = {"phase": "Running", "attempt": 1, "restarts": 0, "startTime": rfc3339(NOW - dt.timedelta(hours=2))}
    done = [JobView("x-attempt-1", 1, complete=True)]
    pods = [PodView("x-attempt-1-0", 1, phase="Succeeded", exit_codes=(0,))]
    for spec in (_with_policy(suspend=True), _with_policy(active_deadline_seconds=60)):
        plan = decide(obs(status, done, pods, spec=spec))
        assert plan.status["phase"] == "Succeeded" and plan.status["modelURI"] == spec.output.uri
        assert not plan.delete_jobs


def test_suspend_says_whether_the_trainer_checkpointed():
    """The Suspended condition names how the attempt's trainers ended once they have, on both backends."""
    spec = _with_policy(suspend=True)
    created = decide(obs(spec=spec))
    assert created.status["phase"] == "Suspended" and created.status["attempt"] == 0
    assert created.status["conditions"][-1]["message"] == "created suspended (spec.runPolicy.suspend)"
    suspended = {"phase": "Suspended", "attempt": 1, "restarts": 0}
    for code, message in ((3, "attempt 1 suspended after a checkpoint"),
                          (-15, "attempt 1 suspended (trainer killed by SIGTERM)"),
                          (143, "attempt 1 suspended (trainer exit code 143)")):
        plan = decide(obs(suspended, [JobView("x-attempt-1", 1, failed=True)],
                          [PodView("x-attempt-1-0", 1, phase="Failed", exit_codes=(code,))], spec=spec))
        cond = next(c for c in plan.status["conditions"] if c["type"] == "Suspended")
        assert (cond["status"], cond["message"]) == ("True", message)
        assert plan.events == []  # a message refined, not a new transition


def test_each_failure_names_its_reason():
    status = {"phase": "Running", "attempt": 1, "restarts": 1}
    failed = [JobView("x-attempt-1", 1, failed=True)]
    config = decide(obs(status, failed, [PodView("p", 1, exit_codes=(2,), message="dataset: bad")]))
    crash = decide(obs(status, failed, [PodView("p", 1, exit_codes=(1,), message="boom")]))
    reasons = [next(c["reason"] for c in p.status["conditions"] if c["type"] == "Failed") for p in (config, crash)]
    assert reasons == ["ConfigurationError", "RestartBudgetExhausted"]
    assert next(c["message"] for c in config.status["conditions"] if c["type"] == "Failed") == "dataset: bad"
    assert [e[0] for e in crash.events] == ["Warning"]
