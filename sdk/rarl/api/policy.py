"""What a RARLJob may put into its pods on a cluster: the operator's admission policy.

Creating a RARLJob creates pods. Without a policy, whoever may create RARLJobs in a namespace could run
any image under any ServiceAccount there, or point the trainer's S3 client at their own server together
with a Secret reference of their choosing, and so read the namespace's Secrets. The operator checks every
job against this policy (the Helm chart's ``policy`` values) before it creates or re-creates a child;
the defaults are safe for a namespace shared by several teams. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from rarl.api.types import RARLJob
from rarl.api.vocabulary import DEFAULT_TRAINER_IMAGE, TOOLING_METADATA_PREFIXES
from rarl.errors import Problem

# The names the trainer's S3 client reads; with the endpoint pinned, a job cannot choose which keys of a
# Secret are sent where (the review's attack: sessionTokenKey: password, sent as X-Amz-Security-Token).
AWS_KEY_FIELDS = {
    "accessKeyIdKey": ("access_key_id_key", "AWS_ACCESS_KEY_ID"),
    "secretAccessKeyKey": ("secret_access_key_key", "AWS_SECRET_ACCESS_KEY"),
    "sessionTokenKey": ("session_token_key", "AWS_SESSION_TOKEN"),
}


@dataclass(frozen=True)
class PodPolicy:
    """The operator's limits on what a job's spec may put into its pods (chart values ``policy.*``)."""

    trainer_image: str = DEFAULT_TRAINER_IMAGE
    """The operator's trainer image: always allowed, and what an unset ``resources.image`` runs."""
    allowed_images: tuple[str, ...] = ()
    """More images ``resources.image`` may name; ``*`` in an entry matches any characters (``*`` alone: any)."""
    allow_service_account: bool = False
    """Whether ``resources.serviceAccountName`` may be set (the pods then run with that account's rights)."""
    s3_endpoint: str | None = None
    """The operator's S3 endpoint: always allowed for ``storage.endpoint``."""
    allowed_s3_endpoints: tuple[str, ...] = ()
    """More endpoints ``storage.endpoint`` may name (``*`` matches any characters)."""
    fixed_secret_keys: bool = True
    """Whether ``storage.credentialsSecret``'s key names must be the AWS ones (AWS_ACCESS_KEY_ID, ...)."""
    pod_label_keys: tuple[str, ...] = ("*", "app.kubernetes.io/*", "helm.sh/*", "kueue.x-k8s.io/*")
    """Patterns of the job's label keys that may reach its pods; ``*`` does not match ``/``, so the default
    admits keys without a prefix, the usual tooling ones and Kueue's queue name, and refuses e.g. ``azure.workload.identity/use``."""
    pod_annotation_keys: tuple[str, ...] = ("*", "meta.helm.sh/*", "argocd.argoproj.io/*")
    """Patterns of the job's annotation keys that reach its pods; the default refuses other prefixed keys such
    as ``iam.amazonaws.com/role`` or ``container.apparmor.security.beta.kubernetes.io/trainer``."""


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


def _key_matches(key: str, patterns: tuple[str, ...]) -> bool:
    """fnmatch where ``*`` stays within the prefix or within the name: ``*`` is not ``example.com/*``."""
    return any(fnmatchcase(key, p) and ("/" in key) == ("/" in p) for p in patterns)


def _allowed(values: tuple[str, ...], chart_value: str) -> str:
    listed = ", ".join(repr(v) for v in values) if values else "nothing else"
    return f"allowed: {listed} (an administrator can allow more with the chart value {chart_value})"


def policy_problems(job: RARLJob, policy: PodPolicy) -> list[Problem]:
    """Every field of ``job`` outside ``policy``, each naming the field and what would be accepted."""
    spec, res = job.spec, job.spec.resources
    problems: list[Problem] = []
    if res.image is not None and res.image != policy.trainer_image and not _matches(res.image, policy.allowed_images):
        problems.append(Problem("spec.resources.image", (
            f"{res.image!r} is not allowed on this cluster: leave it unset (the operator's trainer image "
            f"{policy.trainer_image!r}); {_allowed(policy.allowed_images, 'policy.allowedImages')}")))
    if res.service_account_name and not policy.allow_service_account:
        problems.append(Problem("spec.resources.serviceAccountName", (
            f"{res.service_account_name!r}: setting a ServiceAccount is not allowed on this cluster (the pods would "
            "run with that account's rights); leave it unset: the job's own account may only read the job and "
            "patch its status (an administrator can allow it with the chart value policy.allowServiceAccountName)")))
    endpoint = spec.storage.endpoint
    if endpoint is not None and endpoint != policy.s3_endpoint and not _matches(endpoint, policy.allowed_s3_endpoints):
        default = f"the operator's {policy.s3_endpoint!r}" if policy.s3_endpoint else "the S3 client's default"
        problems.append(Problem("spec.storage.endpoint", (
            f"{endpoint!r} is not allowed on this cluster (the trainer sends the storage credentials there): "
            f"leave it unset ({default}); {_allowed(policy.allowed_s3_endpoints, 'policy.allowedS3Endpoints')}")))
    secret = spec.storage.credentials_secret
    if secret is not None and policy.fixed_secret_keys:
        for field, (attr, fixed) in AWS_KEY_FIELDS.items():
            key = getattr(secret, attr)
            if key is not None and key != fixed:
                problems.append(Problem(f"spec.storage.credentialsSecret.{field}", (
                    f"{key!r}: on this cluster the key names are fixed; use {fixed!r} (or leave it unset), so a job "
                    "cannot send another key of the Secret to its storage (chart value policy.fixedSecretKeys)")))
    for where, values, patterns, chart_value in (
        ("labels", job.metadata.labels, policy.pod_label_keys, "policy.podLabelKeys"),
        ("annotations", job.metadata.annotations, policy.pod_annotation_keys, "policy.podAnnotationKeys"),
    ):
        for key in sorted(values or {}):
            if key.startswith(TOOLING_METADATA_PREFIXES) or _key_matches(key, patterns):  # tooling keys stay off pods
                continue
            problems.append(Problem(f"metadata.{where}[{key!r}]", (
                f"this key is copied to the trainer pods and may change what they are given (identity, sandbox); "
                f"on this cluster pods take only keys matching {list(patterns)!r}: remove it, or ask an administrator "
                f"to allow it with the chart value {chart_value}")))
    return problems
