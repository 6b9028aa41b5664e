"""Crash safety of the operator, and the trainer's status reporter against the emulator."""

from __future__ import annotations

from rarl.api.reports import Progress
from rarl.api.vocabulary import ANNOTATION_RESTARTS
from rarl.progress_k8s import KubernetesStatusReporter
from tests.operator.conftest import apply, job_doc, reconciled, status, wait_phase
from tests.support.kubelet import JOBS, RJ, wait_job
from tests.support.polling import wait_for


def attempts(kube, name):
    return sorted(int(n.rsplit("-", 1)[1]) for n in kube.objects(JOBS) if n.startswith(f"{name}-attempt-"))


def test_killed_operator_never_duplicates_jobs(kube, operator, kubelet):
    names = [f"crashy-{i}" for i in range(12)]
    operator.kill()
    for n in names[:6]:
        apply(kube, job_doc(n))
    operator.start(wait=False)
    # killed while it reconciles: as soon as its first Job exists
    wait_for(lambda: any(kube.get(JOBS, f"{n}-attempt-1") for n in names[:6]), timeout=30, what="a first Job")
    operator.kill()
    for n in names[6:]:
        apply(kube, job_doc(n))
    operator.start()
    for n in names:
        wait_job(kube, n, 1)
        wait_phase(kube, n, "Pending")
    # A crash between the write-ahead status and the Job: attempt 2 recorded, its Job missing.
    kubelet.start_pods(names[0], 1)
    wait_phase(kube, names[0], "Running")
    operator.kill()
    kubelet.fail(names[0], 1, code=1)
    kube.call("PATCH", f"/apis/rarl.dev/v1alpha1/namespaces/default/rarljobs/{names[0]}/status",
              {"status": {"phase": "Restarting", "attempt": 2, "restarts": 1}})
    operator.start()
    job2 = wait_job(kube, names[0], 2)
    assert job2["metadata"]["annotations"][ANNOTATION_RESTARTS] == "1"
    reconciled(kube, *names)
    for n in names:
        assert attempts(kube, n) == ([1, 2] if n == names[0] else [1]), n
        assert status(kube, n)["attempt"] == (2 if n == names[0] else 1)
    assert status(kube, names[0])["restarts"] == 1  # counted once, not again after the restart


def test_reporter_patches_status_shown_by_kubectl(kube, operator, kubelet, name):
    apply(kube, job_doc(name))
    kubelet.start_pods(name, 1)
    wait_phase(kube, name, "Running")
    api = kube.client()
    reporter = KubernetesStatusReporter(name, "default", min_interval=30.0, api_client=api)
    for step in range(1, 6):
        reporter.report(Progress(stage="ranking-aware", step=step, total_steps=60, reward=0.1 * step,
                                 metrics={"mae": 1.5}, latest_checkpoint=f"s3://ckpt-bucket/jobs/step-{step}"))
    assert reporter.sent == 1  # throttled: only the first went out
    st = wait_for(lambda: status(kube, name) if status(kube, name).get("step") == 1 else None, what="step 1")
    assert st["stage"] == "ranking-aware"
    reporter.close()  # the last report is always flushed
    assert reporter.sent == 2
    out = kube.kubectl("get", "rj", name, "-o", "yaml")
    assert "step: 5" in out and "reward: 0.5" in out and "latestCheckpoint: s3://ckpt-bucket/jobs/step-5" in out
    row = kube.kubectl("get", "rj", name).splitlines()[1].split()
    assert row[:5] == [name, "Running", "ranking-aware", "5", "0.5"]
    reconciled(kube, name)  # the operator's reconciles leave the trainer's fields alone
    assert status(kube, name)["step"] == 5 and status(kube, name)["phase"] == "Running"
    api.close()


def test_reporter_never_raises(kube):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # nothing listens there
    reporter = KubernetesStatusReporter("ghost", "default", min_interval=0.0, api_client=client.ApiClient(cfg),
                                        timeout=0.5)
    reporter.report(Progress(step=1))
    reporter.close()
    assert reporter.sent == 0
    missing = KubernetesStatusReporter("does-not-exist", "default", min_interval=0.0, api_client=kube.client())
    missing.report(Progress(step=1))
    missing.report(Progress(step=2))  # disabled after the 404: no retries storm
    missing.close()
    assert missing.sent == 0 and kube.get(RJ, "does-not-exist") is None
