"""Fixtures: one API emulator and one operator process per session; helpers that play the kubelet."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.emulator import KubeEmulator
from tests.support.kubelet import RJ, Kubelet
from tests.support.operator_runner import OperatorProcess
from tests.support.polling import wait_for

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


def wait_phase(kube: KubeEmulator, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(lambda: status(kube, name) if status(kube, name).get("phase") == phase else None,
                    timeout=timeout, what=f"{name} phase {phase} (now {status(kube, name).get('phase')})")


def reconciled(kube: KubeEmulator, *names: str, times: int = 2, timeout: float = 30) -> None:
    """Wait until the operator has reconciled each RARLJob ``times`` more times: a negative check needs them.

    Each round writes a canary (status.observedGeneration 0) and waits until the operator has written the
    generation back: that reconcile read the object after the canary write, so after the test's earlier writes.
    One key never runs twice at once, so the second round also waits out the first reconcile's writes
    (a write-ahead status patch lands before the Job it records).
    """
    for _ in range(times):
        for n in names:
            kube.call("PATCH", f"/apis/rarl.dev/v1alpha1/namespaces/default/rarljobs/{n}/status",
                      {"status": {"observedGeneration": 0}})
        for n in names:
            wait_for(lambda n=n: status(kube, n).get("observedGeneration") == rj(kube, n)["metadata"]["generation"],
                     timeout=timeout, what=f"a reconcile of {n} after the canary")


def condition(st: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c["type"] == ctype), {})


@pytest.fixture
def kubelet(kube) -> Kubelet:
    return Kubelet(kube)


REPO = Path(__file__).resolve().parents[2]
