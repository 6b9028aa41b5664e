"""The pure builders: schema-valid children with the torchrun contract, RBAC and owner references."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from rarl import manifests as m
from rarl.api.types import RARLJob
from rarl.api.vocabulary import ANNOTATION_RESTARTS, LABEL_ATTEMPT, LABEL_JOB

UID = "0c1f6a7e-1111-2222-3333-444455556666"

MINIMAL = {
    "apiVersion": "rarl.dev/v1alpha1",
    "kind": "RARLJob",
    "metadata": {"name": "demo", "namespace": "team-a",
                 "labels": {"kueue.x-k8s.io/queue-name": "gpu-queue", "team": "vision"},
                 "annotations": {"owner": "alice",
                                 "kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
    "spec": {
        "model": {"base": "Qwen/Qwen2.5-VL-3B-Instruct"},
        "dataset": {"format": "synthetic"},
        "checkpoint": {"uri": "s3://ckpt-bucket/demo"},
        "output": {"uri": "s3://model-bucket/demo"},
    },
}


def job_with(**spec_updates) -> RARLJob:
    doc = copy.deepcopy(MINIMAL)
    doc["spec"].update(spec_updates)
    return RARLJob.model_validate(doc)


GPU = job_with(
    resources={"nodes": 4, "gpusPerNode": 8, "image": "registry.example/rarl-trainer:1.2.3",
               "requests": {"cpu": 16, "memory": "128Gi"}, "limits": {"memory": "160Gi"},
               "nodeSelector": {"gpu": "h100"}, "shmSize": "32Gi", "priorityClassName": "training",
               "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    storage={"endpoint": "https://s3.example.com", "region": "eu-west-1", "pathStyle": True,
             "credentialsSecret": {"name": "s3-creds", "accessKeyIdKey": "id", "secretAccessKeyKey": "secret",
                                   "sessionTokenKey": "token"}},
)


def env_of(job: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


RDMA = job_with(
    resources={"nodes": 2, "gpusPerNode": 8, "workspaceSize": "800Gi", "cacheVolumeClaim": "rarl-cache",
               "requests": {"ephemeralStorage": "500Gi", "extra": {"rdma/hca_shared_devices_a": 1}},
               "limits": {"ephemeralStorage": "1Ti", "extra": {"hugepages-2Mi": "1Gi"}}},
)


@pytest.mark.parametrize("job", [job_with(), GPU, RDMA], ids=["cpu-minimal", "gpu-multinode", "rdma-cache"])
def test_every_child_passes_the_official_schema(job):
    children = m.all_children(job, UID, attempt=2, restarts=1)
    assert [c["kind"] for c in children] == ["ConfigMap", "Service", "NetworkPolicy", "ServiceAccount", "Role",
                                             "RoleBinding", "Job"]
    for child in children:
        kubernetes_validate.validate(child, "1.30.0", strict=True)
        owner = child["metadata"]["ownerReferences"]
        assert owner == [{"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "name": "demo", "uid": UID,
                          "controller": True, "blockOwnerDeletion": True}]
        assert child["metadata"]["namespace"] == "team-a"
        assert child["metadata"]["labels"][LABEL_JOB] == "demo"


def test_indexed_job_runs_torchrun_with_the_rendezvous_env():
    job = m.attempt_job(GPU, UID, attempt=3, restarts=2)
    spec = job["spec"]
    assert job["metadata"]["name"] == "demo-attempt-3"
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (
        "Indexed", 4, 4, 0)
    assert "podFailurePolicy" not in spec  # the operator classifies failures itself
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["subdomain"] == "demo"
    c = pod["containers"][0]
    assert c["command"] == ["python", "-m", "rarl_trainer.entrypoint"]  # torchrun keeping exit codes 2/3
    assert c["args"][:5] == ["--nnodes=$(NNODES)", "--nproc_per_node=$(NPROC_PER_NODE)", "--node_rank=$(NODE_RANK)",
                             "--master_addr=$(MASTER_ADDR)", "--master_port=$(MASTER_PORT)"]
    assert c["args"][5:] == ["-m", "rarl_trainer", "--config", "/etc/rarl/job.yaml", "--resume", "auto",
                             "--run-dir", "/workspace/run"]
    env = env_of(job)
    assert env["NNODES"] == "4" and env["NPROC_PER_NODE"] == "8" and env["MASTER_PORT"] == "29500"
    assert env["MASTER_ADDR"] == "demo-attempt-3-0.demo"
    assert env["NODE_RANK"] == {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert env["RARL_JOB_NAME"] == "demo" and env["RARL_ATTEMPT"] == "3"
    assert env["RARL_JOB_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["RARL_S3_ENDPOINT"] == "https://s3.example.com" and env["AWS_REGION"] == "eu-west-1"
    assert env["RARL_S3_PATH_STYLE"] == "true"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3-creds", "key": "id"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-creds", "key": "secret"}}
    assert env["AWS_SESSION_TOKEN"] == {"secretKeyRef": {"name": "s3-creds", "key": "token"}}
    assert c["resources"] == {"requests": {"cpu": "16", "memory": "128Gi", "ephemeral-storage": "100Gi",
                                           "nvidia.com/gpu": "8"},
                              "limits": {"memory": "160Gi", "nvidia.com/gpu": "8"}}
    assert c["image"] == "registry.example/rarl-trainer:1.2.3"
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    assert pod["nodeSelector"] == {"gpu": "h100"} and pod["priorityClassName"] == "training"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "demo-trainer"


@pytest.mark.parametrize("grace,shutdown", [(120, 105), (600, 585), (20, 10), (1, 1)])
def test_torchrun_gives_workers_the_grace_period_to_checkpoint(grace, shutdown):
    """torchrun SIGKILLs its workers 30 s after SIGTERM by default; the pod tells it to wait the grace period
    (less a margin for collecting exit codes), so a preempted pod can save its checkpoint."""
    job = m.attempt_job(GPU, UID, attempt=1, restarts=0, defaults=m.Defaults(termination_grace_seconds=grace))
    assert job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == grace
    assert env_of(job)["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == str(shutdown)
    assert 0 < shutdown <= grace


def test_cpu_job_uses_one_process_and_the_default_image():
    job = m.attempt_job(job_with(), UID, attempt=1, restarts=0,
                        defaults=m.Defaults(trainer_image="img:cpu", s3_endpoint="http://minio:9000"))
    env = env_of(job)
    assert env["NNODES"] == "1" and env["NPROC_PER_NODE"] == "1"
    assert env["RARL_S3_ENDPOINT"] == "http://minio:9000" and env["RARL_S3_PATH_STYLE"] == "false"
    assert "AWS_ACCESS_KEY_ID" not in env
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "img:cpu" and c["resources"] == {"requests": {"ephemeral-storage": "100Gi"}}


def test_labels_and_annotations_pass_through_but_tool_state_does_not():
    job = m.attempt_job(job_with(), UID, attempt=1, restarts=0)
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
        assert meta["labels"]["team"] == "vision"
        assert meta["labels"][LABEL_ATTEMPT] == "1"
        assert meta["annotations"]["owner"] == "alice"
        assert not any(k.startswith("kubectl.kubernetes.io/") for k in meta["annotations"])
    assert job["metadata"]["annotations"][ANNOTATION_RESTARTS] == "0"


def test_service_is_headless_and_selects_every_attempt():
    svc = m.headless_service(job_with(), UID)
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {LABEL_JOB: "demo"}


def test_trainer_role_allows_only_its_own_status():
    role = m.status_role(job_with(), UID)
    assert role["rules"] == [
        {"apiGroups": ["rarl.dev"], "resources": ["rarljobs/status"], "resourceNames": ["demo"], "verbs": ["patch"]},
    ]
    binding = m.status_role_binding(job_with(), UID)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "demo-trainer", "namespace": "team-a"}]


def test_config_map_holds_the_job_without_status_or_tool_state():
    cm = m.config_map(job_with(), UID)
    doc = yaml.safe_load(cm["data"]["job.yaml"])
    assert doc["kind"] == "RARLJob" and "status" not in doc
    assert doc["metadata"] == {"name": "demo", "namespace": "team-a",
                               "labels": {"kueue.x-k8s.io/queue-name": "gpu-queue", "team": "vision"},
                               "annotations": {"owner": "alice"}}
    again = RARLJob.model_validate(doc)  # the trainer can read it back
    assert again.spec == job_with().spec


def test_own_service_account_skips_the_per_job_rbac():
    job = job_with(resources={"serviceAccountName": "shared-trainer"})
    kinds = [c["kind"] for c in m.shared_children(job, UID)]
    assert kinds == ["ConfigMap", "Service", "NetworkPolicy"]
    assert m.attempt_job(job, UID, 1, 0)["spec"]["template"]["spec"]["serviceAccountName"] == "shared-trainer"


def test_no_secret_value_can_reach_a_child():
    text = yaml.safe_dump(m.all_children(GPU, UID, 1, 0))
    assert "secretKeyRef" in text and "AWS_SECRET_ACCESS_KEY: " not in text


def test_workspace_disk_is_requested_and_capped():
    """/workspace holds model, data, checkpoints and export: without an ephemeral-storage request the kubelet
    evicts the pod first under disk pressure, without a sizeLimit it can fill the node."""
    pod = m.attempt_job(GPU, UID, attempt=1, restarts=0)["spec"]["template"]["spec"]
    workspace = next(v for v in pod["volumes"] if v["name"] == "workspace")
    assert workspace["emptyDir"] == {"sizeLimit": "100Gi"}
    assert pod["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "100Gi"
    pod = m.attempt_job(RDMA, UID, attempt=1, restarts=0)["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "workspace")["emptyDir"] == {"sizeLimit": "800Gi"}
    res = pod["containers"][0]["resources"]
    assert res["requests"]["ephemeral-storage"] == "500Gi" and res["limits"]["ephemeral-storage"] == "1Ti"


def test_extra_resources_reach_requests_and_limits_alike():
    """Extended resources (RDMA devices for NCCL, hugepages) cannot be overcommitted: one set on either side
    is requested and limited alike, next to the GPUs."""
    res = m.attempt_job(RDMA, UID, attempt=1, restarts=0)["spec"]["template"]["spec"]["containers"][0]["resources"]
    for side in ("requests", "limits"):
        assert res[side]["rdma/hca_shared_devices_a"] == "1" and res[side]["hugepages-2Mi"] == "1Gi"
        assert res[side]["nvidia.com/gpu"] == "8"


@pytest.mark.parametrize("resources,field", [
    ({"requests": {"extra": {"rdma/x": 1}}, "limits": {"extra": {"rdma/x": 2}}}, "spec.resources.limits.extra.rdma/x"),
    ({"limits": {"extra": {"nvidia.com/gpu": 8}}}, "spec.resources.limits.extra"),
    ({"requests": {"extra": {"Not A Name": 1}}}, "spec.resources.requests.extra"),
    ({"cacheVolumeClaim": "Bad_Name"}, "spec.resources.cacheVolumeClaim"),
])
def test_bad_resources_are_refused_at_the_field(resources, field):
    from rarl.api.validation import validate_document

    doc = copy.deepcopy(MINIMAL)
    doc["spec"]["resources"] = resources
    job, problems = validate_document(doc)
    assert job is None and [p.path for p in problems] == [field], problems


def test_compile_and_download_caches_survive_restarts_on_a_cache_claim():
    """torch.compile and Triton caches default to /tmp (an emptyDir): every attempt recompiled. They live under
    /workspace/.cache, where resources.cacheVolumeClaim mounts a PersistentVolumeClaim."""
    for job, claim in ((GPU, None), (RDMA, "rarl-cache")):
        built = m.attempt_job(job, UID, attempt=1, restarts=0)
        pod = built["spec"]["template"]["spec"]
        env = env_of(built)
        assert env["TORCHINDUCTOR_CACHE_DIR"] == "/workspace/.cache/torchinductor"
        assert env["TRITON_CACHE_DIR"] == "/workspace/.cache/triton"
        assert env["HF_HOME"] == "/workspace/.cache/huggingface"
        mounts = {v["mountPath"]: v["name"] for v in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        if claim is None:
            assert "/workspace/.cache" not in mounts and "cache" not in volumes
        else:
            assert volumes[mounts["/workspace/.cache"]]["persistentVolumeClaim"] == {"claimName": claim}
