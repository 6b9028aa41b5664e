"""rarl.Client and rarlctl on the Kubernetes backend: the API emulator with the real operator running.

The emulator stands in for the API server and the tests play the kubelet (no real nodes can run here).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from rarl import BackendUnavailable, Client, InvalidSpec, JobNotFound, WaitTimeout
from rarl.api.reports import Progress
from rarl.backends.kubernetes import KubernetesBackend
from rarl.errors import RARLError
from rarl.progress_k8s import KubernetesStatusReporter
from tests.support.emulator import KubeEmulator
from tests.support.kubelet import JOBS, Kubelet, wait_job
from tests.support.operator_runner import OperatorProcess
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    with KubeEmulator(tmp_path_factory.mktemp("kube")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def operator(kube, tmp_path_factory):
    proc = OperatorProcess(kube, tmp_path_factory.mktemp("operator") / "operator.log",
                           env={"RARL_RESYNC_SECONDS": "0.3"})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def client(kube, operator) -> Client:
    return Client("kubernetes", kubeconfig=str(kube.kubeconfig))


def job_doc(labels: dict[str, str] | None = None) -> dict:
    doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    doc["metadata"] = {"name": f"sdk-{uuid.uuid4().hex[:6]}", "labels": labels or {}}
    doc["spec"]["output"] = {"uri": f"s3://models/{doc['metadata']['name']}"}
    doc["spec"]["checkpoint"]["uri"] = f"s3://checkpoints/{doc['metadata']['name']}"
    return doc


def test_submit_wait_succeeds_with_progress_and_model_uri(client, kube):
    job = client.submit(job_doc())
    name = job.name
    assert job.metadata.namespace == "default" and job.spec.stages[0].name == "regression-warmup"
    wait_job(kube, name, 1)
    kubelet = Kubelet(kube)
    kubelet.start_pods(name, 1)
    reporter = KubernetesStatusReporter(name, "default", api_client=kube.client(), min_interval=0)
    reporter.report(Progress(stage="ranking-aware", step=42, total_steps=60, reward=1.25, metrics={"n1/mae": 0.5}))
    reporter.close()
    seen = []
    running = client.wait(name, until={"Running"}, timeout=15, poll_interval=0.1)
    assert running.status.phase == "Running"
    wait_for(lambda: client.get(name).status.step == 42, timeout=10, what="progress in status")
    kubelet.complete(name, 1)
    done = client.wait(name, timeout=20, poll_interval=0.1, on_progress=seen.append)
    assert done.status.phase == "Succeeded"
    assert done.status.model_uri == f"s3://models/{name}"
    assert done.status.stage == "ranking-aware" and done.status.metrics == {"n1/mae": 0.5}
    assert seen and seen[-1].status.phase == "Succeeded"


def test_wait_times_out(client):
    job = client.submit(job_doc())
    with pytest.raises(WaitTimeout, match=f"job '{job.name}' is (Pending|Running), not Failed or Succeeded: waited 0.5 s"):
        client.wait(job.name, timeout=0.5, poll_interval=0.1)


def test_list_with_labels_get_and_delete(client, kube):
    a = client.submit(job_doc({"team": "vision"}))
    b = client.submit(job_doc({"team": "audio"}))
    names = {j.name for j in client.list()}
    assert {a.name, b.name} <= names
    assert [j.name for j in client.list(labels={"team": "audio"}) if j.name in (a.name, b.name)] == [b.name]
    assert client.get(a.name).metadata.labels == {"team": "vision"}
    client.delete(a.name)
    with pytest.raises(JobNotFound, match=f"RARLJob '{a.name}' not found in namespace 'default'"):
        client.get(a.name)
    with pytest.raises(RARLError, match="already exists"):
        client.submit(client.get(b.name).to_dict(include_status=False))


def test_suspend_and_resume_patch_the_spec_and_the_operator_follows(client, kube):
    job = client.submit(job_doc())
    wait_job(kube, job.name, 1)
    assert client.suspend(job.name).spec.run_policy.suspend is True
    suspended = client.wait(job.name, until={"Suspended"}, timeout=15, poll_interval=0.1)
    assert suspended.status.phase == "Suspended"
    wait_for(lambda: kube.get(JOBS, f"{job.name}-attempt-1") is None, timeout=10, what="attempt Job deleted")
    assert client.resume(job.name).spec.run_policy.suspend is False
    wait_job(kube, job.name, 2)  # a new attempt resumes from the newest checkpoint
    job_obj = kube.get(JOBS, f"{job.name}-attempt-2")
    args = job_obj["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--resume" in args and args[args.index("--resume") + 1] == "auto"


def test_invalid_spec_is_refused_before_it_reaches_the_cluster(client):
    doc = job_doc()
    doc["spec"]["grpo"] = {"numGenerations": 1}
    with pytest.raises(InvalidSpec, match=r"spec\.grpo\.numGenerations"):
        client.submit(doc)


def test_crd_missing_is_backend_unavailable(tmp_path):
    with KubeEmulator(tmp_path / "bare", crds=[]) as bare:
        backend = KubernetesBackend(kubeconfig=str(bare.kubeconfig))
        with pytest.raises(BackendUnavailable, match=r"CRD \(rarljobs.rarl.dev\) is not installed"):
            backend.list()
        with pytest.raises(BackendUnavailable, match="not installed"):
            backend.get("anything")


def test_cli_against_the_emulator(rarlctl_proc, kube, operator, tmp_path):
    doc = job_doc()
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    common = ["--backend", "kubernetes", "--kubeconfig", str(kube.kubeconfig)]
    r = rarlctl_proc(*common, "submit", "-f", str(path))
    assert r.code == 0 and f"rarljob/{doc['metadata']['name']} submitted (kubernetes backend)" in r.out
    r = rarlctl_proc(*common, "get", doc["metadata"]["name"], "-o", "json")
    assert r.code == 0 and json.loads(r.out)["metadata"]["name"] == doc["metadata"]["name"]
    r = rarlctl_proc("get", doc["metadata"]["name"], "-n", "default", "-o", "yaml", *common)  # kubectl order
    assert r.code == 0 and yaml.safe_load(r.out)["metadata"]["name"] == doc["metadata"]["name"], r.err
    r = rarlctl_proc("list", "-n", "elsewhere", *common)  # -n reaches the backend: another namespace's jobs
    assert r.code == 0 and "No jobs found" in r.err, r.err
    r = rarlctl_proc(*common, "describe", doc["metadata"]["name"])
    assert r.code == 0 and "Conditions" in r.out
    r = rarlctl_proc(*common, "get", "no-such-job")
    assert r.code == 1 and "not found in namespace 'default'" in r.err
    r = rarlctl_proc(*common, "wait", doc["metadata"]["name"], "--timeout", "0.5")
    assert r.code == 124 and "waited 0.5 s" in r.err  # a wait timeout has its own exit code


def test_submit_refuses_locations_inside_the_pod(client, kube):
    """Refused before anything reaches the cluster (issue 28, row 4)."""
    from rarl.errors import InvalidSpec

    doc = job_doc()
    doc["spec"]["checkpoint"]["uri"] = ".rarl/ckpt"
    with pytest.raises(InvalidSpec, match=r"spec.checkpoint.uri: '.rarl/ckpt' is a folder inside the trainer pod"):
        client.submit(doc)
    assert doc["metadata"]["name"] not in kube.objects("rarl.dev/v1alpha1/rarljobs")
