"""Issue 29, "policy in the operator": what a RARLJob may put into its pods, and the per-job NetworkPolicy.

The review's finding: creating a RARLJob was creating a pod that could read the namespace's Secrets
(``storage.endpoint: http://attacker:9000`` plus ``credentialsSecret: {name: db-creds, sessionTokenKey:
password}`` sent that Secret's value to the attacker as X-Amz-Security-Token), run any image under any
ServiceAccount, and carry identity-granting labels onto its pods. The operator now refuses such a spec.
The emulator stands in for an API server; no kubelet or CNI runs here, so the NetworkPolicy is checked as
an object (its schema and selectors), not by sending packets.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from rarl import manifests as m
from rarl.api.policy import PodPolicy, policy_problems
from rarl.api.types import RARLJob
from rarl.api.vocabulary import LABEL_JOB
from rarl_operator.settings import Settings, SettingsError, from_env
from tests.operator.conftest import apply, condition, job_doc, reconciled, rj, wait_phase
from tests.support.polling import wait_for

JOBS = "batch/v1/jobs"
ATTACK = {"endpoint": "http://attacker:9000",
          "credentialsSecret": {"name": "db-creds", "sessionTokenKey": "password"}}


def typed(name: str = "p", labels: dict | None = None, annotations: dict | None = None, **spec) -> RARLJob:
    doc = job_doc(name, **spec)
    doc["metadata"].update({"labels": labels or {}, "annotations": annotations or {}})
    return RARLJob.model_validate(doc)


def fields(problems) -> list[str]:
    return [p.path for p in problems]


def test_the_reviews_attack_and_every_other_grant_is_refused_by_default():
    problems = policy_problems(typed(storage=ATTACK), PodPolicy())
    assert fields(problems) == ["spec.storage.endpoint", "spec.storage.credentialsSecret.sessionTokenKey"]
    assert "'http://attacker:9000' is not allowed" in problems[0].message
    assert "use 'AWS_SESSION_TOKEN'" in problems[1].message
    job = typed(resources={"image": "evil/miner:latest", "serviceAccountName": "cluster-admin-sa"},
                labels={"team": "vision", "azure.workload.identity/use": "true"},
                annotations={"owner": "alice", "iam.amazonaws.com/role": "admin",
                             "kubectl.kubernetes.io/last-applied-configuration": "{}"})
    problems = policy_problems(job, PodPolicy())
    assert fields(problems) == ["spec.resources.image", "spec.resources.serviceAccountName",
                                "metadata.labels['azure.workload.identity/use']",
                                "metadata.annotations['iam.amazonaws.com/role']"]
    assert "policy.allowedImages" in problems[0].message and "policy.allowServiceAccountName" in problems[1].message


def test_what_the_policy_allows_passes():
    assert policy_problems(typed(), PodPolicy()) == []  # the default job: operator image, own account
    same = typed(resources={"image": PodPolicy().trainer_image}, storage={"endpoint": "http://minio:9000"},
                 labels={"app.kubernetes.io/part-of": "ml", "team": "x"}, annotations={"meta.helm.sh/release-name": "r"})
    assert policy_problems(same, PodPolicy(s3_endpoint="http://minio:9000")) == []
    open_ = PodPolicy(allowed_images=("registry.example.com/rarl/*",), allow_service_account=True,
                      allowed_s3_endpoints=("https://*.example.com",), fixed_secret_keys=False,
                      pod_label_keys=("*", "azure.workload.identity/*"), pod_annotation_keys=("iam.amazonaws.com/role",))
    job = typed(resources={"image": "registry.example.com/rarl/trainer:1", "serviceAccountName": "ml-sa"},
                storage={"endpoint": "https://s3.example.com", "credentialsSecret": {"name": "s", "accessKeyIdKey": "id"}},
                labels={"azure.workload.identity/use": "true"}, annotations={"iam.amazonaws.com/role": "ml"})
    assert policy_problems(job, open_) == []
    # '*' stays inside a key's name: it does not admit prefixed keys, nor an image of another registry
    assert fields(policy_problems(typed(annotations={"example.com/x": "1"}), open_)) == ["metadata.annotations['example.com/x']"]
    assert fields(policy_problems(typed(resources={"image": "docker.io/rarl/trainer"}), open_)) == ["spec.resources.image"]


def test_settings_read_the_policy_from_the_chart_env(monkeypatch):
    monkeypatch.setenv("RARL_POLICY_ALLOWED_IMAGES", "a/b:*, c/d:1")
    monkeypatch.setenv("RARL_POLICY_ALLOW_SERVICE_ACCOUNT_NAME", "true")
    monkeypatch.setenv("RARL_POLICY_POD_LABEL_KEYS", "")
    monkeypatch.setenv("RARL_NETWORK_POLICY", "false")
    s = from_env()
    assert s.policy.allowed_images == ("a/b:*", "c/d:1") and s.policy.allow_service_account is True
    assert s.policy.pod_label_keys == () and s.defaults.network_policy is False
    assert Settings().policy == PodPolicy()  # unset: the safe defaults
    monkeypatch.setenv("RARL_POLICY_FIXED_SECRET_KEYS", "yes")
    with pytest.raises(SettingsError, match="RARL_POLICY_FIXED_SECRET_KEYS='yes': expected true or false"):
        from_env()


def test_network_policy_admits_only_the_jobs_own_pods():
    job = typed("demo")
    policy = m.network_policy(job, "uid-1")
    kubernetes_validate.validate(policy, "1.30.0", strict=True)
    own = {"podSelector": {"matchLabels": {LABEL_JOB: "demo"}}}
    assert policy["spec"] == {**own, "policyTypes": ["Ingress"], "ingress": [{"from": [own]}]}
    assert "NetworkPolicy" in [c["kind"] for c in m.shared_children(job, "uid-1")]
    assert "NetworkPolicy" not in [c["kind"] for c in m.shared_children(job, "uid-1", m.Defaults(network_policy=False))]


def test_the_trainer_role_can_only_patch_its_jobs_status():
    """The trainer reads its spec from the ConfigMap: the Role's two ``get`` verbs were unused."""
    assert m.status_role(typed("demo"), "uid-1")["rules"] == [
        {"apiGroups": ["rarl.dev"], "resources": ["rarljobs/status"], "resourceNames": ["demo"], "verbs": ["patch"]}]


def test_the_operator_refuses_the_attack_and_creates_nothing(kube, operator, name):
    apply(kube, job_doc(name, storage=ATTACK))
    st = wait_phase(kube, name, "Failed")
    message = condition(st, "InvalidSpec")["message"]
    assert "spec.storage.endpoint: 'http://attacker:9000' is not allowed" in message
    assert "spec.storage.credentialsSecret.sessionTokenKey" in message
    reconciled(kube, name)
    for plural in (JOBS, "v1/configmaps", "v1/serviceaccounts"):
        assert not any(n.startswith(name) for n in kube.objects(plural)), plural


def test_a_spec_edited_after_admission_is_checked_before_the_next_pod(kube, operator, name):
    """Admission alone is not enough: a running job edited to another image would get it at its next attempt."""
    apply(kube, job_doc(name))
    wait_phase(kube, name, "Pending")
    wait_for(lambda: kube.get(JOBS, f"{name}-attempt-1"), what="the first attempt's Job")  # created last
    fence = kube.get("networking.k8s.io/v1/networkpolicies", f"{name}-trainers")
    assert fence["metadata"]["ownerReferences"][0]["uid"] == rj(kube, name)["metadata"]["uid"]
    doc = job_doc(name, resources={"image": "evil/miner:latest"})
    apply(kube, doc)
    st = wait_phase(kube, name, "Failed")
    assert "spec.resources.image: 'evil/miner:latest' is not allowed" in condition(st, "InvalidSpec")["message"]
    reconciled(kube, name)
    images = [j["spec"]["template"]["spec"]["containers"][0]["image"] for n, j in kube.objects(JOBS).items()
              if n.startswith(f"{name}-attempt-")]
    assert "evil/miner:latest" not in images  # no attempt with it was created (the first one is deleted on failure)
