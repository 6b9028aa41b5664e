"""The operator against the API emulator, driven by real kubectl and the kubernetes client."""

from __future__ import annotations

import json

import yaml

from rarl.api.vocabulary import ANNOTATION_RESTARTS
from tests.operator.conftest import REPO, apply, condition, job_doc, reconciled, rj, status, wait_phase
from tests.support.kubelet import JOBS, RJ, wait_job
from tests.support.polling import wait_for


def env_of(job):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def attempts(kube, name):
    return sorted(int(n.rsplit("-", 1)[1]) for n in kube.objects(JOBS) if n.startswith(f"{name}-attempt-"))


def test_quickstart_apply_creates_owned_children(kube, operator):
    doc = yaml.safe_load((REPO / "examples/quickstart.yaml").read_text())
    doc["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "cpu-queue"}
    # on a cluster what the job keeps goes to S3 (README: "To move the quickstart to a cluster")
    doc["spec"]["checkpoint"]["uri"] = "s3://ckpt-bucket/quickstart"
    doc["spec"]["output"]["uri"] = "s3://model-bucket/quickstart"
    out = apply(kube, doc)
    assert "rarljob.rarl.dev/quickstart created" in out
    job = wait_job(kube, "quickstart", 1)
    owner = rj(kube, "quickstart")
    uid = owner["metadata"]["uid"]
    for plural, child in [("v1/configmaps", "quickstart-config"), ("v1/services", "quickstart"),
                          ("v1/serviceaccounts", "quickstart-trainer"),
                          ("rbac.authorization.k8s.io/v1/roles", "quickstart-trainer"),
                          ("rbac.authorization.k8s.io/v1/rolebindings", "quickstart-trainer"),
                          ("networking.k8s.io/v1/networkpolicies", "quickstart-trainers"),
                          (JOBS, "quickstart-attempt-1")]:
        obj = wait_for(lambda p=plural, c=child: kube.get(p, c), what=f"{plural} {child}")
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "name": "quickstart", "uid": uid,
            "controller": True, "blockOwnerDeletion": True}]
    env = env_of(job)
    assert env["NNODES"] == "1" and env["MASTER_ADDR"] == "quickstart-attempt-1-0.quickstart"
    assert env["RARL_JOB_NAME"] == "quickstart"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "cpu-queue"
    config = yaml.safe_load(kube.get("v1/configmaps", "quickstart-config")["data"]["job.yaml"])
    assert config["spec"]["stages"][0]["name"] == "regression-warmup" and "status" not in config
    st = wait_phase(kube, "quickstart", "Pending")
    total = sum(stage["steps"] for stage in doc["spec"]["stages"])
    assert st["attempt"] == 1 and st["restarts"] == 0 and st["totalSteps"] == total
    assert condition(st, "Created")["reason"] == "Created"
    # No finalizer (deletion can never wedge) and no kopf bookkeeping on the object.
    meta = rj(kube, "quickstart")["metadata"]
    assert not meta.get("finalizers")
    assert not any(k.startswith("kopf.") for k in (meta.get("annotations") or {}))
    events = wait_for(lambda: [e for e in kube.objects("v1/events").values()
                               if e["involvedObject"]["name"] == "quickstart"], what="an Event")
    assert any(e["reason"] == "Created" for e in events)


def test_pending_running_succeeded_sets_model_uri(kube, operator, kubelet, name):
    apply(kube, job_doc(name, resources={"nodes": 2}))
    wait_phase(kube, name, "Pending")
    pods = kubelet.start_pods(name, 1, nodes=2)
    wait_phase(kube, name, "Running")  # as soon as one pod runs; the message follows the second
    st = wait_for(lambda: (s := status(kube, name)) and "2/2 node(s) running" in condition(s, "Running")["message"]
                  and s, what="2/2 pods running")
    assert condition(st, "Running")["status"] == "True"
    kubelet.complete(name, 1, nodes=2)
    st = wait_phase(kube, name, "Succeeded")
    assert st["modelURI"] == f"s3://model-bucket/{name}"
    assert condition(st, "Succeeded")["status"] == "True" and condition(st, "Running")["status"] == "False"
    assert st["completionTime"]
    assert attempts(kube, name) == [1] and len(pods) == 2
    table = kube.kubectl("get", "rj", name)
    assert table.split("\n")[0].split() == ["NAME", "PHASE", "STAGE", "STEP", "REWARD", "AGE"]
    assert table.split("\n")[1].split()[:2] == [name, "Succeeded"]


def test_crash_retries_as_a_new_attempt_that_resumes(kube, operator, kubelet, name):
    apply(kube, job_doc(name, runPolicy={"maxRestarts": 2}))
    kubelet.start_pods(name, 1)
    wait_phase(kube, name, "Running")
    kubelet.fail(name, 1, code=1, message="CUDA error: an illegal memory access")
    job2 = wait_job(kube, name, 2)
    assert "--resume" in job2["spec"]["template"]["spec"]["containers"][0]["args"]
    assert job2["metadata"]["annotations"][ANNOTATION_RESTARTS] == "1"
    st = wait_phase(kube, name, "Restarting")
    assert st["restarts"] == 1 and st["attempt"] == 2
    assert "illegal memory access" in condition(st, "Restarting")["message"]
    kubelet.start_pods(name, 2)
    st = wait_phase(kube, name, "Running")
    assert condition(st, "Restarting")["status"] == "False"
    reconciled(kube, name)  # nothing more happens
    assert attempts(kube, name) == [1, 2] and status(kube, name)["restarts"] == 1


def test_config_error_fails_at_once_with_the_message(kube, operator, kubelet, name):
    apply(kube, job_doc(name))
    kubelet.start_pods(name, 1)
    kubelet.fail(name, 1, code=2, message="dataset.train: /data/utk does not exist")
    st = wait_phase(kube, name, "Failed")
    assert "dataset.train: /data/utk does not exist" in condition(st, "Failed")["message"]
    assert st["restarts"] == 0
    reconciled(kube, name)
    assert attempts(kube, name) == [1]


def test_restart_budget_exhausted_fails(kube, operator, kubelet, name):
    apply(kube, job_doc(name, runPolicy={"maxRestarts": 1}))
    kubelet.start_pods(name, 1)
    kubelet.fail(name, 1, code=137)
    wait_job(kube, name, 2)
    kubelet.start_pods(name, 2)
    kubelet.fail(name, 2, code=1, message="segfault")
    st = wait_phase(kube, name, "Failed")
    assert "restart budget exhausted (maxRestarts=1)" in condition(st, "Failed")["message"]
    assert st["restarts"] == 1
    reconciled(kube, name)
    assert attempts(kube, name) == [1, 2]
    assert "Failed" in kube.kubectl("get", "rj", name)


def test_disruptions_and_interrupts_do_not_use_the_budget(kube, operator, kubelet, name):
    apply(kube, job_doc(name, runPolicy={"maxRestarts": 0}))
    kubelet.start_pods(name, 1)
    kubelet.fail(name, 1, code=137, disrupted=True)  # preempted
    wait_job(kube, name, 2)
    kubelet.start_pods(name, 2)
    kubelet.fail(name, 2, code=3)  # SIGTERM after a checkpoint
    wait_job(kube, name, 3)
    kubelet.start_pods(name, 3)
    st = wait_phase(kube, name, "Running")
    assert st["restarts"] == 0 and st["attempt"] == 3


def test_suspend_stops_the_attempt_and_resume_starts_a_new_one(kube, operator, kubelet, name):
    apply(kube, job_doc(name))
    kubelet.start_pods(name, 1)
    wait_phase(kube, name, "Running")
    kube.kubectl("patch", "rj", name, "--type=merge", "-p", json.dumps({"spec": {"runPolicy": {"suspend": True}}}))
    st = wait_phase(kube, name, "Suspended")
    assert condition(st, "Suspended")["status"] == "True"
    wait_for(lambda: kube.get(JOBS, f"{name}-attempt-1") is None, what="attempt 1 deleted")
    kube.kubectl("patch", "rj", name, "--type=merge", "-p", json.dumps({"spec": {"runPolicy": {"suspend": False}}}))
    job2 = wait_job(kube, name, 2)
    assert env_of(job2)["MASTER_ADDR"] == f"{name}-attempt-2-0.{name}"
    st = wait_phase(kube, name, "Pending")
    assert condition(st, "Suspended")["status"] == "False" and st["restarts"] == 0
    assert st["observedGeneration"] == 3
    kubelet.start_pods(name, 2)
    wait_phase(kube, name, "Running")


def test_active_deadline_fails_and_stops_the_job(kube, operator, name):
    apply(kube, job_doc(name, runPolicy={"activeDeadlineSeconds": 2}))
    wait_for(lambda: kube.get(JOBS, f"{name}-attempt-1"), what="the attempt's Job")
    # no start_pods here: under load the deadline may already have deleted the Job it would wait for
    st = wait_phase(kube, name, "Failed", timeout=15)
    assert condition(st, "Failed")["reason"] == "DeadlineExceeded"
    wait_for(lambda: kube.get(JOBS, f"{name}-attempt-1") is None, what="the running Job deleted")


def test_ttl_deletes_the_finished_job(kube, operator, kubelet, name):
    apply(kube, job_doc(name, runPolicy={"ttlSecondsAfterFinished": 1}))
    kubelet.start_pods(name, 1)
    kubelet.complete(name, 1)
    wait_phase(kube, name, "Succeeded")
    assert rj(kube, name)
    wait_for(lambda: kube.get(RJ, name) is None, timeout=10, what="the RARLJob deleted by its TTL")
    # kmock has no garbage collector: the owner references are what makes the API server clean up.
    assert kube.get(JOBS, f"{name}-attempt-1")["metadata"]["ownerReferences"][0]["name"] == name


def test_invalid_spec_fails_and_creates_nothing(kube, operator, name):
    doc = job_doc(name)
    doc["spec"]["dataset"] = {"format": "jsonl"}  # needs train and target
    doc["spec"]["grpo"] = {"numGenerations": 1}
    apply(kube, doc)
    st = wait_phase(kube, name, "Failed")
    invalid = condition(st, "InvalidSpec")
    assert invalid["status"] == "True" and invalid["reason"] == "InvalidSpec"
    assert "spec.dataset" in invalid["message"] and "numGenerations" in invalid["message"]
    reconciled(kube, name)
    for plural in (JOBS, "v1/configmaps", "v1/services", "v1/serviceaccounts"):
        assert not any(n.startswith(name) for n in kube.objects(plural)), plural


def test_locations_inside_the_pod_fail_the_job_naming_the_fields(kube, operator, name):
    """kubectl apply of a job whose checkpoints and model would die with the pod (issue 28, row 4)."""
    doc = job_doc(name, checkpoint={"uri": "/workspace/ckpt"})
    doc["spec"]["output"] = {"uri": ".rarl/model"}
    apply(kube, doc)
    st = wait_phase(kube, name, "Failed")
    message = condition(st, "InvalidSpec")["message"]
    assert "spec.checkpoint.uri: '/workspace/ckpt'" in message and "spec.output.uri: '.rarl/model'" in message
    assert "use an s3:// URI" in message
    reconciled(kube, name)
    assert not any(n.startswith(name) for n in kube.objects(JOBS))


def metric(text: str, sample: str) -> float:
    """The value of one sample (``name`` or ``name{labels}``) in the text exposition format."""
    return float(next(line.rsplit(" ", 1)[1] for line in text.splitlines() if line.rsplit(" ", 1)[0] == sample))


def test_metrics_endpoint(kube, operator, kubelet, name):
    before = operator.metrics()
    apply(kube, job_doc(name))
    kubelet.start_pods(name, 1)
    wait_phase(kube, name, "Running")
    reconciled(kube, name, times=1)  # the gauge is set after the status patch: one more reconcile waits it out
    text = operator.metrics()
    assert metric(text, 'rarl_operator_jobs{phase="Running"}') >= 1
    assert metric(text, "rarl_operator_jobs_created_total") >= metric(before, "rarl_operator_jobs_created_total") + 1
    assert "rarl_operator_reconcile_duration_seconds_bucket" in text
    assert (metric(text, "rarl_operator_reconcile_duration_seconds_count")
            > metric(before, "rarl_operator_reconcile_duration_seconds_count"))
