"""Pure builders: a validated RARLJob in, Kubernetes manifests (plain dicts) out.

In the SDK, not the operator: ``rarlctl submit --dry-run`` prints what the operator would
create without the operator package installed. No I/O here, so every child can be unit-tested and schema-validated offline, and
the reconciler can rebuild the exact same object at any time (deterministic
names make re-creation idempotent: the API answers 409 for an existing child).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from rarl.api.settings import training_settings_digest
from rarl.api.types import API_GROUP, GROUP_VERSION, KIND, PLURAL, RARLJob
from rarl.api.vocabulary import (
    ANNOTATION_RESTARTS,
    ANNOTATION_TRAINING_SETTINGS,
    DEFAULT_TRAINER_IMAGE,
    ENV_ATTEMPT,
    ENV_JOB_NAME,
    ENV_JOB_NAMESPACE,
    ENV_S3_ENDPOINT,
    ENV_S3_PATH_STYLE,
    LABEL_ATTEMPT,
    LABEL_JOB,
    TOOLING_METADATA_PREFIXES,
    TRAINER_LAUNCHER,
    trainer_cli_args,
)

MASTER_PORT = 29500
CONFIG_KEY = "job.yaml"
CONFIG_DIR = "/etc/rarl"
RUN_DIR = "/workspace/run"
# Caches under /workspace/.cache: the optional resources.cacheVolumeClaim mounts there, so with it the hub
# downloads and the torch.compile / Triton caches outlive the pod (inductor's default is /tmp, lost on restart).
CACHE_DIR = "/workspace/.cache"
TRAINER_UID = 1000



@dataclass(frozen=True)
class Defaults:
    """Operator-wide defaults that the spec may leave open (the operator passes its settings)."""

    trainer_image: str = DEFAULT_TRAINER_IMAGE
    s3_endpoint: str | None = None
    termination_grace_seconds: int = 120
    network_policy: bool = True  # fence the trainers: only the job's own pods may connect to them


# --------------------------------------------------------------------------- names


def service_name(job: str) -> str:
    """The headless Service; pods get `<pod>.<svc>` DNS names through it."""
    return job


def config_name(job: str) -> str:
    return f"{job}-config"


def account_name(job: str) -> str:
    return f"{job}-trainer"


def network_policy_name(job: str) -> str:
    return f"{job}-trainers"


def attempt_name(job: str, attempt: int) -> str:
    """The batch Job of one attempt; deterministic so a restarted operator never duplicates it."""
    return f"{job}-attempt-{attempt}"


def master_addr(job: str, attempt: int) -> str:
    """Pod 0's stable DNS name: Indexed Job pods are named `<job-name>-<index>` with subdomain = Service."""
    return f"{attempt_name(job, attempt)}-0.{service_name(job)}"


# --------------------------------------------------------------------------- metadata


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """Controller owner reference: garbage collection removes children with the RARLJob."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _user_meta(values: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (values or {}).items() if not k.startswith(TOOLING_METADATA_PREFIXES)}


def base_labels(job: str) -> dict[str, str]:
    """Attempt-independent labels: the Service selects on these, the operator indexes on LABEL_JOB."""
    return {
        LABEL_JOB: job,
        "app.kubernetes.io/name": "rarl-trainer",
        "app.kubernetes.io/instance": job,
        "app.kubernetes.io/managed-by": "rarl-operator",
    }


def _meta(job: RARLJob, uid: str, name: str, *, user: bool = False, extra: dict[str, str] | None = None) -> dict:
    labels = {**(_user_meta(job.metadata.labels) if user else {}), **base_labels(job.name), **(extra or {})}
    meta: dict[str, Any] = {
        "name": name,
        "namespace": job.metadata.namespace or "default",
        "labels": labels,
        "ownerReferences": [owner_reference(job.name, uid)],
    }
    return meta


# --------------------------------------------------------------------------- children


def config_document(job: RARLJob) -> dict[str, Any]:
    """The RARLJob as the trainer reads it: full spec with defaults, clean metadata, no status."""
    meta = {"name": job.name, "namespace": job.metadata.namespace or "default"}
    if job.metadata.labels:
        meta["labels"] = _user_meta(job.metadata.labels)
    if job.metadata.annotations:
        meta["annotations"] = _user_meta(job.metadata.annotations)
    return {"apiVersion": GROUP_VERSION, "kind": KIND, "metadata": meta,
            "spec": job.spec.model_dump(by_alias=True, exclude_none=True, mode="json")}


def config_map(job: RARLJob, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(job, uid, config_name(job.name)),
        "data": {CONFIG_KEY: yaml.safe_dump(config_document(job), sort_keys=False)},
    }


def headless_service(job: RARLJob, uid: str) -> dict[str, Any]:
    """Headless, publishing not-ready pods: rendezvous happens before any pod is Ready."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(job, uid, service_name(job.name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_JOB: job.name},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT, "protocol": "TCP"}],
        },
    }


def service_account(job: RARLJob, uid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(job, uid, account_name(job.name))}


def status_role(job: RARLJob, uid: str) -> dict[str, Any]:
    """Least privilege for the trainer: patch its own job's status, nothing else (it reads its spec from the
    ConfigMap; progress reports are the only API calls it makes)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(job, uid, account_name(job.name)),
        "rules": [
            {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/status"], "resourceNames": [job.name],
             "verbs": ["patch"]},
        ],
    }


def status_role_binding(job: RARLJob, uid: str) -> dict[str, Any]:
    name = account_name(job.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(job, uid, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": job.metadata.namespace or "default"}],
    }


def network_policy(job: RARLJob, uid: str) -> dict[str, Any]:
    """Only the job's own pods may connect to its trainers, on any port: the c10d store (MASTER_PORT) is
    unauthenticated and collectives unpickle what peers send, and NCCL/gloo pick their ports at run time.
    Outgoing traffic (storage, trackers, DNS) is left open."""
    own_pods = {"podSelector": {"matchLabels": {LABEL_JOB: job.name}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(job, uid, network_policy_name(job.name)),
        "spec": {**own_pods, "policyTypes": ["Ingress"], "ingress": [{"from": [own_pods]}]},
    }


def worker_shutdown_seconds(grace_seconds: int) -> int:
    """How long torchrun lets workers checkpoint after SIGTERM: the grace period less a margin (15 s, or half
    of a short grace period) in which the launcher collects exit codes before the kubelet's SIGKILL."""
    return max(1, grace_seconds - min(15, grace_seconds // 2))


def _env(job: RARLJob, attempt: int, defaults: Defaults) -> list[dict[str, Any]]:
    spec, res = job.spec, job.spec.resources
    nproc = res.gpus_per_node if res.gpus_per_node > 0 else 1
    env: list[dict[str, Any]] = [
        {"name": "NNODES", "value": str(res.nodes)},
        {"name": "NPROC_PER_NODE", "value": str(nproc)},
        {"name": "NODE_RANK", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "MASTER_ADDR", "value": master_addr(job.name, attempt)},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": ENV_JOB_NAME, "value": job.name},
        {"name": ENV_JOB_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": ENV_ATTEMPT, "value": str(attempt)},
        {"name": "HOME", "value": "/workspace"},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        {"name": "TORCHINDUCTOR_CACHE_DIR", "value": f"{CACHE_DIR}/torchinductor"},
        {"name": "TRITON_CACHE_DIR", "value": f"{CACHE_DIR}/triton"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        # torchrun's wait for its workers after SIGTERM (they checkpoint), inside the pod's grace period
        {"name": "TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "value": str(worker_shutdown_seconds(defaults.termination_grace_seconds))},
    ]
    storage = spec.storage
    endpoint = storage.endpoint or defaults.s3_endpoint
    if endpoint:
        env.append({"name": ENV_S3_ENDPOINT, "value": endpoint})
    if storage.region:
        env += [{"name": "AWS_REGION", "value": storage.region},
                {"name": "AWS_DEFAULT_REGION", "value": storage.region}]
    env.append({"name": ENV_S3_PATH_STYLE, "value": "true" if storage.path_style else "false"})
    secret = storage.credentials_secret
    if secret is not None:  # references only: the values never leave the Secret
        keys = [("AWS_ACCESS_KEY_ID", secret.access_key_id_key),
                ("AWS_SECRET_ACCESS_KEY", secret.secret_access_key_key)]
        if secret.session_token_key:
            keys.append(("AWS_SESSION_TOKEN", secret.session_token_key))
        env += [{"name": var, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}}} for var, key in keys]
    return env


def _native(side: Any) -> dict[str, str]:
    named = (("cpu", side.cpu), ("memory", side.memory), ("ephemeral-storage", side.ephemeral_storage))
    return {k: v for k, v in named if v is not None}


def _resources(job: RARLJob) -> dict[str, Any]:
    res = job.spec.resources
    requests, limits = _native(res.requests), _native(res.limits)
    # The workspace's disk is requested, so the scheduler places the pod where it fits and the kubelet, under
    # disk pressure, evicts pods that exceed their request first (a pod without one is first in line).
    requests.setdefault("ephemeral-storage", res.workspace_size)
    # extended resources (GPUs, RDMA devices, hugepages) cannot be overcommitted: requests equal limits
    extended = {**res.requests.extra, **res.limits.extra}
    if res.gpus_per_node > 0:
        extended["nvidia.com/gpu"] = str(res.gpus_per_node)
    requests.update(extended)
    limits.update(extended)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


TRAINER_COMMAND = ["python", "-m", TRAINER_LAUNCHER]  # torchrun through rarl's launcher (keeps exit codes 2/3)


def trainer_args() -> list[str]:
    """torchrun's arguments; $(VAR) is expanded by the kubelet from the container env."""
    return [
        "--nnodes=$(NNODES)",
        "--nproc_per_node=$(NPROC_PER_NODE)",
        "--node_rank=$(NODE_RANK)",
        "--master_addr=$(MASTER_ADDR)",
        "--master_port=$(MASTER_PORT)",
        *trainer_cli_args(f"{CONFIG_DIR}/{CONFIG_KEY}", RUN_DIR),
    ]


def attempt_job(job: RARLJob, uid: str, attempt: int, restarts: int, defaults: Defaults = Defaults(),
                started_with: Mapping[str, str] | None = None) -> dict:
    """The Indexed Job of one attempt: one pod per node, no Job-level retries (the operator owns them).

    ``started_with``: the training-settings digest of the job's first attempt, carried to later ones
    (their trainer reads the ConfigMap written for the first); None: this spec's.
    """
    res = job.spec.resources
    name = attempt_name(job.name, attempt)
    labels = {LABEL_ATTEMPT: str(attempt)}
    meta = _meta(job, uid, name, user=True, extra=labels)
    annotations = _user_meta(job.metadata.annotations)
    digest = started_with if started_with is not None else training_settings_digest(job.spec)
    meta["annotations"] = {**annotations, ANNOTATION_RESTARTS: str(restarts),
                           ANNOTATION_TRAINING_SETTINGS: json.dumps(dict(digest), sort_keys=True)}
    pod_labels = {**_user_meta(job.metadata.labels), **base_labels(job.name), **labels}
    container: dict[str, Any] = {
        "name": "trainer",
        "image": res.image or defaults.trainer_image,
        "imagePullPolicy": res.image_pull_policy,
        "command": list(TRAINER_COMMAND),
        "args": trainer_args(),
        "env": _env(job, attempt, defaults),
        "ports": [{"name": "rendezvous", "containerPort": MASTER_PORT, "protocol": "TCP"}],
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "workspace", "mountPath": "/workspace"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if job.spec.logging.credentials_secret:
        # Tracker credentials (W&B, MLflow) by reference only; the explicit env above wins over a same-named key.
        container["envFrom"] = [{"secretRef": {"name": job.spec.logging.credentials_secret}}]
    resources = _resources(job)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "subdomain": service_name(job.name),
        "serviceAccountName": res.service_account_name or account_name(job.name),
        "terminationGracePeriodSeconds": defaults.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TRAINER_UID,
            "runAsGroup": TRAINER_UID,
            "fsGroup": TRAINER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": config_name(job.name)}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": res.shm_size}},
            {"name": "workspace", "emptyDir": {"sizeLimit": res.workspace_size}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if res.cache_volume_claim:
        pod_spec["volumes"].append({"name": "cache", "persistentVolumeClaim": {"claimName": res.cache_volume_claim}})
        container["volumeMounts"].append({"name": "cache", "mountPath": CACHE_DIR})
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod_spec["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in res.tolerations]
    if res.priority_class_name:
        pod_spec["priorityClassName"] = res.priority_class_name
    template_meta: dict[str, Any] = {"labels": pod_labels}
    if annotations:
        template_meta["annotations"] = annotations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "completionMode": "Indexed",
            "completions": res.nodes,
            "parallelism": res.nodes,
            "backoffLimit": 0,
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def shared_children(job: RARLJob, uid: str, defaults: Defaults = Defaults()) -> list[dict[str, Any]]:
    """Children that live as long as the RARLJob (created once, before the first attempt's Job)."""
    children = [config_map(job, uid), headless_service(job, uid)]
    if defaults.network_policy:
        children.append(network_policy(job, uid))
    if not job.spec.resources.service_account_name:
        children += [service_account(job, uid), status_role(job, uid), status_role_binding(job, uid)]
    return children


def all_children(job: RARLJob, uid: str, attempt: int, restarts: int, defaults: Defaults = Defaults(),
                 started_with: Mapping[str, str] | None = None) -> list:
    """Everything one attempt needs, in creation order (the Job last: its pods need the rest)."""
    return [*shared_children(job, uid, defaults), attempt_job(job, uid, attempt, restarts, defaults, started_with)]
