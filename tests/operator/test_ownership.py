"""Issue 29, rows "Ownership" and "Status has one owner per field".

Ownership: a child whose name is taken by an object this RARLJob does not own is not adopted, and only
the Jobs this RARLJob owns (and the pods those Jobs own) count, whatever carries its label.
One owner per field: the trainer may patch the status subresource, but the fields the operator decides
on or reports (phase, conditions, attempt, restarts, startTime, completionTime) come from the operator's
own record, so a trainer-side patch neither extends the restart budget or the deadline nor moves the phase.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from rarl import manifests
from rarl.api.types import RARLJob
from rarl.api.vocabulary import LABEL_ATTEMPT, LABEL_JOB
from rarl.lifecycle import decide
from rarl_operator.reconciler import job_view, observe, pod_view
from tests.operator.conftest import BASE_SPEC, apply, condition, job_doc, reconciled, rj, status, wait_phase
from tests.support.kubelet import JOBS, PODS, wait_job
from tests.support.polling import wait_for

RJ_STATUS = "/apis/rarl.dev/v1alpha1/namespaces/default/rarljobs/{}/status"


def attempts(kube, name: str) -> list[int]:
    return sorted(int(n.rsplit("-", 1)[1]) for n in kube.objects(JOBS) if n.startswith(f"{name}-attempt-"))


def trainer_patch(kube, name: str, fields: dict[str, Any]) -> None:
    """What trainer code can do with its Role: merge-patch its RARLJob's status subresource."""
    kube.call("PATCH", RJ_STATUS.format(name), {"status": fields})


def events(kube, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in kube.objects("v1/events").values()
            if e["involvedObject"]["name"] == name and e["reason"] == reason]


# --------------------------------------------------------------------------- ownership


def test_observe_counts_only_the_jobs_and_pods_this_rarljob_owns():
    """Issue 29 "Ownership": a pod of someone else labelled with the job's name that exits 2 must not fail
    the job as a configuration error, and a foreign Job with its label must not become its newest attempt."""
    uid = "rj-uid"
    job = RARLJob.model_validate({"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob",
                                  "metadata": {"name": "victim", "namespace": "default"}, "spec": BASE_SPEC})
    ours = manifests.attempt_job(job, uid, 1, 0)
    ours["metadata"]["uid"] = "job-1-uid"
    ours["status"] = {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
    foreign = manifests.attempt_job(job, "someone-else", 5, 0)
    foreign["metadata"].update(name="evil", uid="evil-job-uid")

    def pod(pod_name: str, owner: str | None, code: int) -> dict[str, Any]:
        meta = {"name": pod_name, "labels": {LABEL_JOB: "victim", LABEL_ATTEMPT: "1"}}
        if owner:
            meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": "x", "uid": owner}]
        return {"metadata": meta, "status": {"phase": "Failed", "containerStatuses": [
            {"state": {"terminated": {"exitCode": code, "message": "bad config" if code == 2 else ""}}}]}}

    body = {"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob",
            "metadata": {"name": "victim", "namespace": "default", "uid": uid, "generation": 1},
            "spec": BASE_SPEC, "status": {"phase": "Running", "attempt": 1, "restarts": 0}}
    now = dt.datetime.now(dt.timezone.utc)
    obs = observe(body, [job_view(ours), job_view(foreign)],
                  [pod_view(pod("victim-attempt-1-0", "job-1-uid", 1)), pod_view(pod("evil-pod", None, 2))], now)
    assert sorted(obs.jobs) == [1]
    assert [p.name for p in obs.pods[1]] == ["victim-attempt-1-0"]
    plan = decide(obs)
    assert plan.status["phase"] == "Restarting" and plan.ensure_attempt == 2  # a crash, retried; not a config error


def test_create_does_not_adopt_an_existing_object_without_the_owner(kube):
    """Issue 29 "Ownership": a 409 on create was success whatever the existing object's owner was."""
    from rarl_operator.api import Api, ChildNotOwned

    api = Api(kube.client())
    ours = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "adopt-me-config", "namespace": "default", "ownerReferences": [
                {"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "name": "adopt-me", "uid": "uid-1",
                 "controller": True, "blockOwnerDeletion": True}]},
            "data": {"job.yaml": "ours"}}
    kube.call("POST", "/api/v1/namespaces/default/configmaps",
              {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "adopt-me-config"},
               "data": {"job.yaml": "theirs"}}, content_type="application/json")
    with pytest.raises(ChildNotOwned, match="ConfigMap adopt-me-config already exists and is not owned by this "
                                            r"RARLJob \(it has no owner\)"):
        api.create(ours)
    kube.call("DELETE", "/api/v1/namespaces/default/configmaps/adopt-me-config", content_type="application/json")
    assert api.create(ours) is True and api.create(ours) is False  # our own child: 409 is done
    assert kube.get("v1/configmaps", "adopt-me-config")["data"] == {"job.yaml": "ours"}


def test_a_child_name_taken_by_a_foreign_object_waits_until_it_is_gone(kube, operator, name):
    """Issue 29 "Ownership": a pre-existing ConfigMap with the job's config name was silently used.

    The job waits (Created False, ChildNotOwned, one Warning Event) with no Job, and proceeds after the
    object is deleted.
    """
    kube.call("POST", "/api/v1/namespaces/default/configmaps",
              {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-config"},
               "data": {"job.yaml": "someone else's"}}, content_type="application/json")
    apply(kube, job_doc(name))
    blocked = wait_for(lambda: condition(status(kube, name), "Created")
                       if condition(status(kube, name), "Created").get("reason") == "ChildNotOwned" else None,
                       timeout=15, what="Created False ChildNotOwned")
    assert blocked["status"] == "False"
    assert blocked["message"].startswith(f"ConfigMap {name}-config already exists and is not owned by this RARLJob")
    reconciled(kube, name)
    assert attempts(kube, name) == [] and status(kube, name)["phase"] == "Pending"
    assert kube.get("v1/configmaps", f"{name}-config")["data"] == {"job.yaml": "someone else's"}
    assert len(wait_for(lambda: events(kube, name, "ChildNotOwned"), what="a ChildNotOwned Event")) == 1
    kube.call("DELETE", f"/api/v1/namespaces/default/configmaps/{name}-config", content_type="application/json")
    wait_job(kube, name, 1, timeout=15)
    uid = rj(kube, name)["metadata"]["uid"]
    assert [r["uid"] for r in kube.get("v1/configmaps", f"{name}-config")["metadata"]["ownerReferences"]] == [uid]
    created = wait_for(lambda: condition(status(kube, name), "Created")
                       if condition(status(kube, name), "Created").get("status") == "True" else None,
                       what="Created True")
    assert created["reason"] == "Created" and len(events(kube, name, "ChildNotOwned")) == 1


def test_a_foreign_pod_and_job_with_the_jobs_label_are_not_followed(kube, operator, kubelet, name):
    """Issue 29 "Ownership": pods and Jobs were matched by label only, so a foreign pod exiting 2 failed the job
    as a configuration error and a foreign Job with a higher attempt label was taken as its newest attempt."""
    apply(kube, job_doc(name, runPolicy={"maxRestarts": 2}))
    kubelet.start_pods(name, 1)
    wait_phase(kube, name, "Running")
    labels = {LABEL_JOB: name, LABEL_ATTEMPT: "1"}
    kube.call("POST", "/api/v1/namespaces/default/pods",
              {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"evil-{name}", "labels": labels},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, content_type="application/json")
    kubelet.exit_pod(f"evil-{name}", 2, "configuration error, says the foreign pod")
    kube.call("POST", "/apis/batch/v1/namespaces/default/jobs",
              {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": f"evil-{name}", "labels": {LABEL_JOB: name, LABEL_ATTEMPT: "7"}},
               "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}],
                                              "restartPolicy": "Never"}}}}, content_type="application/json")
    reconciled(kube, name)
    assert status(kube, name)["phase"] == "Running" and status(kube, name)["attempt"] == 1
    kubelet.fail(name, 1, code=1)
    wait_job(kube, name, 2)
    st = wait_phase(kube, name, "Restarting")
    assert st["restarts"] == 1 and "trainer crashed (exit code 1)" in condition(st, "Restarting")["message"]
    assert kube.get(PODS, f"evil-{name}") is not None  # the operator neither used nor touched them
    assert kube.get(JOBS, f"evil-{name}") is not None


# --------------------------------------------------------------------------- one owner per status field


def test_a_trainer_status_patch_does_not_extend_the_restart_budget(kube, operator, kubelet, name):
    """Issue 29 "Status has one owner per field": resetting restarts (with a far attempt) from the trainer's
    Role made the operator start a fresh Job with restarts 0 beside the running one. The operator restores
    restarts and attempt, and the job fails after maxRestarts real failures."""
    apply(kube, job_doc(name, runPolicy={"maxRestarts": 1}))
    kubelet.start_pods(name, 1)
    wait_phase(kube, name, "Running")
    kubelet.fail(name, 1, code=1)
    kubelet.start_pods(name, 2)
    wait_for(lambda: status(kube, name).get("phase") == "Running" and status(kube, name)["attempt"] == 2,
             what="attempt 2 running")
    assert status(kube, name)["restarts"] == 1
    trainer_patch(kube, name, {"restarts": 0, "attempt": 9})
    wait_for(lambda: (status(kube, name).get("restarts"), status(kube, name).get("attempt")) == (1, 2),
             timeout=15, what=f"restarts and attempt restored (now {status(kube, name)})")
    reconciled(kube, name)
    assert attempts(kube, name) == [1, 2]
    kubelet.fail(name, 2, code=1)
    st = wait_phase(kube, name, "Failed")
    assert "restart budget exhausted (maxRestarts=1)" in condition(st, "Failed")["message"]
    assert st["restarts"] == 1 and attempts(kube, name) == [1, 2]


def test_a_trainer_status_patch_does_not_move_the_deadline_or_the_phase(kube, operator, kubelet, name):
    """Issue 29 "Status has one owner per field": a trainer that set startTime ahead escaped
    activeDeadlineSeconds, and one that set phase Suspended made the operator "resume" it as a new attempt
    with a fresh deadline clock. The operator restores both, and the deadline still fails the job."""
    apply(kube, job_doc(name, runPolicy={"activeDeadlineSeconds": 8}))
    kubelet.start_pods(name, 1)
    started = wait_phase(kube, name, "Running")["startTime"]
    trainer_patch(kube, name, {"startTime": "2999-01-01T00:00:00Z", "phase": "Suspended"})
    wait_for(lambda: status(kube, name).get("startTime") == started
             and status(kube, name).get("phase") in ("Running", "Failed"),
             timeout=15, what=f"startTime and phase restored (now {status(kube, name)})")
    st = wait_phase(kube, name, "Failed", timeout=20)
    assert condition(st, "Failed")["reason"] == "DeadlineExceeded" and st["startTime"] == started
    assert st["attempt"] == 1  # no "resumed" attempt 2
