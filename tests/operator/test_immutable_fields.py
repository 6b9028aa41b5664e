"""Training settings are immutable once the job exists: the operator reports a change and keeps the old ones."""

from __future__ import annotations

import datetime as dt

from rarl import manifests
from rarl.api.settings import training_settings_digest
from rarl.api.types import RARLJob, RARLJobSpec
from rarl.api.vocabulary import ANNOTATION_TRAINING_SETTINGS
from rarl.lifecycle import JobView, Observed, PodView, decide
from rarl_operator.reconciler import Reconciler, job_view
from rarl_operator.settings import Settings

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
DOC = {"model": {"base": "m"}, "dataset": {"format": "synthetic"},
       "checkpoint": {"uri": "s3://ckpt-bucket/x"}, "output": {"uri": "s3://out-bucket/x"},
       "runPolicy": {"maxRestarts": 2}}
SPEC = RARLJobSpec.model_validate(DOC)
STARTED_WITH = training_settings_digest(SPEC)
RUNNING = {"phase": "Running", "attempt": 1, "restarts": 0, "observedGeneration": 1}


def changed(**updates) -> RARLJobSpec:
    return RARLJobSpec.model_validate({**DOC, **updates})


def obs(spec, status=RUNNING, generation=2, jobs=None, pods=()):
    jobs = jobs or [JobView("x-attempt-1", 1, started_with=STARTED_WITH)]
    o = Observed(name="x", spec=spec, problems=[], status=dict(status), generation=generation, now=NOW)
    o.jobs = {j.attempt: j for j in jobs}
    for p in pods:
        o.pods.setdefault(p.attempt, []).append(p)
    return o


def warnings(plan) -> list[str]:
    return [msg for kind, reason, msg in plan.events if kind == "Warning" and reason == "ImmutableFieldChanged"]


def test_a_changed_training_field_is_reported_by_name_and_the_attempt_keeps_running():
    spec = changed(model={"base": "other"}, grpo={"learningRate": 3e-5})
    plan = decide(obs(spec))
    (msg,) = warnings(plan)
    assert msg.startswith("spec.grpo, spec.model changed after the job started")
    assert "spec.dataset" not in msg and "immutable once the job exists" in msg
    assert plan.status["phase"] == "Running" and plan.delete_jobs == [] and plan.ensure_attempt is None


def test_the_warning_is_posted_once_per_spec_generation():
    spec = changed(model={"base": "other"})
    assert warnings(decide(obs(spec, generation=2)))
    assert warnings(decide(obs(spec, generation=1))) == []  # observedGeneration 1: already reported


def test_mutable_fields_change_without_a_warning():
    spec = changed(resources={"nodes": 2}, runPolicy={"maxRestarts": 5, "suspend": False},
                   checkpoint={"uri": "s3://ckpt-bucket/y"}, grpo={"rolloutEngine": "trl"})
    assert warnings(decide(obs(spec))) == []


def test_a_job_without_a_recorded_digest_is_not_compared():
    plan = decide(obs(changed(model={"base": "other"}), jobs=[JobView("x-attempt-1", 1)]))
    assert warnings(plan) == [] and plan.started_with is None


def test_later_attempts_record_the_settings_the_job_was_started_with():
    """A restart or resume reads the first attempt's ConfigMap: its Job records that attempt's digest."""
    spec = changed(model={"base": "other"})
    failed = JobView("x-attempt-1", 1, failed=True, started_with=STARTED_WITH)
    crash = [PodView("x-attempt-1-0", 1, phase="Failed", exit_codes=(1,))]
    plan = decide(obs(spec, jobs=[failed], pods=crash))
    assert plan.ensure_attempt == 2 and plan.started_with == STARTED_WITH
    resumed = decide(obs(spec, status={**RUNNING, "phase": "Suspended"},
                         jobs=[JobView("x-attempt-1", 1, failed=True, started_with=STARTED_WITH)]))
    assert resumed.ensure_attempt == 2 and resumed.started_with == STARTED_WITH
    assert len(warnings(resumed)) == 1


def test_the_job_annotation_round_trips_through_job_view():
    job = RARLJob.model_validate({"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob",
                                  "metadata": {"name": "x", "namespace": "ns"}, "spec": DOC})
    body = manifests.attempt_job(job, "uid", 1, 0)
    assert job_view(body).started_with == STARTED_WITH
    carried = manifests.attempt_job(job, "uid", 2, 0, started_with={"model": "0123"})
    assert job_view(carried).started_with == {"model": "0123"}
    body["metadata"]["annotations"][ANNOTATION_TRAINING_SETTINGS] = "not json"
    assert job_view(body).started_with is None


class _RecordingApi:
    def __init__(self):
        self.created: list[dict] = []

    def create(self, obj):
        self.created.append(obj)
        return True

    def patch_status(self, *_):
        pass


def test_the_reconciler_creates_the_next_attempt_with_the_recorded_digest():
    api = _RecordingApi()
    rec = Reconciler(Settings(workers=1), api=api)
    body = {"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob",
            "metadata": {"name": "x", "namespace": "ns", "uid": "uid", "generation": 2},
            "spec": changed(model={"base": "other"}).model_dump(by_alias=True, exclude_none=True, mode="json"),
            "status": dict(RUNNING)}
    failed = JobView("x-attempt-1", 1, failed=True, started_with=STARTED_WITH)
    crash = [PodView("x-attempt-1-0", 1, phase="Failed", exit_codes=(1,))]
    o = obs(RARLJobSpec.model_validate(body["spec"]), jobs=[failed], pods=crash)
    plan = decide(o)
    try:
        rec._execute(("ns", "x"), body, o, plan)
    finally:
        rec.executor.shutdown()
    (job,) = [c for c in api.created if c["kind"] == "Job"]
    assert job_view(job).started_with == STARTED_WITH and job["metadata"]["name"] == "x-attempt-2"
