"""The Job controller and kubelet, played by tests against a ``KubeEmulator``."""

from __future__ import annotations

from typing import Any

from tests.support.emulator import KubeEmulator
from tests.support.polling import wait_for

RJ = "rarl.dev/v1alpha1/rarljobs"
JOBS = "batch/v1/jobs"
PODS = "v1/pods"


def wait_job(kube: KubeEmulator, name: str, attempt: int, timeout: float = 30) -> dict[str, Any]:
    return wait_for(lambda: kube.get(JOBS, f"{name}-attempt-{attempt}"), timeout=timeout,
                    what=f"Job {name}-attempt-{attempt}")


class Kubelet:
    """Plays the Job controller and kubelet: creates pods, runs them, ends them, marks Jobs."""

    def __init__(self, kube: KubeEmulator):
        self.kube = kube

    def start_pods(self, name: str, attempt: int, nodes: int = 1, phase: str = "Running") -> list[str]:
        job = wait_job(self.kube, name, attempt)
        template = job["spec"]["template"]
        # as the Job controller does: the operator follows only the pods its Jobs own
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                 "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        names = []
        for index in range(nodes):
            pod_name = f"{name}-attempt-{attempt}-{index}"
            pod = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": "default", "ownerReferences": [owner],
                             "labels": dict(template["metadata"]["labels"]),
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
