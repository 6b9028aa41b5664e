"""Fixtures: one API emulator and one operator process per session; helpers that play the kubelet."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import KubeEmulator, OperatorProcess, wait_for

RJ = "rarl.dev/v1alpha1/rarljobs"
JOBS = "batch/v1/jobs"
PODS = "v1/pods"

BASE_SPEC: dict[str, Any] = {
    "model": {"base": "builtin:tiny-qwen2.5-vl"},
    "dataset": {"format": "synthetic"},
    "checkpoint": {"uri": "s3://ckpt-bucket/jobs"},
    "output": {"uri": "s3://model-bucket/jobs"},
}


@pytest.fixture(scope="session")
def kube(tmp_path_factory) -> KubeEmulator:
    with KubeEmulator(tmp_path_factory.mktemp("kube")) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def operator(kube, tmp_path_factory) -> OperatorProcess:
    proc = OperatorProcess(kube, tmp_path_factory.mktemp("operator") / "operator.log",
                           env={"RARL_RESYNC_SECONDS": "0.3", "RARL_WORKERS": "4"})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def name(request) -> str:
    """A unique RARLJob name per test (all tests share one emulator)."""
    base = request.node.name.removeprefix("test_").replace("_", "-")[:30].rstrip("-")
    return f"{base}-{uuid.uuid4().hex[:4]}"


def job_doc(name: str, **spec: Any) -> dict[str, Any]:
    merged = copy.deepcopy(BASE_SPEC)
    for key, value in spec.items():
        merged[key] = value
    merged["output"] = {"uri": f"s3://model-bucket/{name}"}
    return {"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": name}, "spec": merged}


def apply(kube: KubeEmulator, doc: dict[str, Any]) -> str:
    return kube.kubectl("apply", "--validate=false", "-f", "-", input=yaml.safe_dump(doc))


def rj(kube: KubeEmulator, name: str) -> dict[str, Any]:
    return kube.get(RJ, name) or {}


def status(kube: KubeEmulator, name: str) -> dict[str, Any]:
    return rj(kube, name).get("status") or {}


def wait_phase(kube: KubeEmulator, name: str, phase: str, timeout: float = 10) -> dict[str, Any]:
    return wait_for(lambda: status(kube, name) if status(kube, name).get("phase") == phase else None,
                    timeout=timeout, what=f"{name} phase {phase} (now {status(kube, name).get('phase')})")


def wait_job(kube: KubeEmulator, name: str, attempt: int, timeout: float = 10) -> dict[str, Any]:
    return wait_for(lambda: kube.get(JOBS, f"{name}-attempt-{attempt}"), timeout=timeout,
                    what=f"Job {name}-attempt-{attempt}")


def condition(st: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c["type"] == ctype), {})


class Kubelet:
    """Plays the Job controller and kubelet: creates pods, runs them, ends them, marks Jobs."""

    def __init__(self, kube: KubeEmulator):
        self.kube = kube

    def start_pods(self, name: str, attempt: int, nodes: int = 1, phase: str = "Running") -> list[str]:
        job = wait_job(self.kube, name, attempt)
        template = job["spec"]["template"]
        names = []
        for index in range(nodes):
            pod_name = f"{name}-attempt-{attempt}-{index}"
            pod = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": "default", "labels": dict(template["metadata"]["labels"]),
                             "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
                "spec": template["spec"],
            }
            self.kube.call("POST", "/api/v1/namespaces/default/pods", pod, content_type="application/json")
            self.pod_status(pod_name, {"phase": phase})
            names.append(pod_name)
        self.job_status(name, attempt, {"active": nodes})
        return names

    def pod_status(self, pod: str, status: dict[str, Any]) -> None:
        self.kube.call("PATCH", f"/api/v1/namespaces/default/pods/{pod}/status", {"status": status})

    def exit_pod(self, pod: str, code: int, message: str = "", conditions: list | None = None) -> None:
        status: dict[str, Any] = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": "trainer", "ready": False, "restartCount": 0, "image": "x",
                                   "imageID": "", "state": {"terminated": {"exitCode": code, "message": message,
                                                                           "reason": "Error" if code else "Completed"}}}],
        }
        if conditions:
            status["conditions"] = conditions
        self.pod_status(pod, status)

    def job_status(self, name: str, attempt: int, status: dict[str, Any]) -> None:
        self.kube.call("PATCH", f"/apis/batch/v1/namespaces/default/jobs/{name}-attempt-{attempt}/status",
                       {"status": status})

    def complete(self, name: str, attempt: int, nodes: int = 1) -> None:
        for index in range(nodes):
            self.exit_pod(f"{name}-attempt-{attempt}-{index}", 0)
        self.job_status(name, attempt, {"active": 0, "succeeded": nodes, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]})

    def fail(self, name: str, attempt: int, code: int, message: str = "", disrupted: bool = False) -> None:
        conds = [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}] if disrupted else None
        self.exit_pod(f"{name}-attempt-{attempt}-0", code, message, conds)
        self.job_status(name, attempt, {"active": 0, "failed": 1, "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})


@pytest.fixture
def kubelet(kube) -> Kubelet:
    return Kubelet(kube)


REPO = Path(__file__).resolve().parents[2]
