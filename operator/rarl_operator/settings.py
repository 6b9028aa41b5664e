"""Operator settings from the environment (the Helm chart sets them), read once at import."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from rarl.api.policy import PodPolicy
from rarl.api.vocabulary import DEFAULT_TRAINER_IMAGE, ENV_S3_ENDPOINT
from rarl.manifests import Defaults


class SettingsError(ValueError):
    """An operator setting in the environment that cannot be used (the operator does not start)."""


def _number(name: str, default: float, kind: type, minimum: float):
    """``$name`` as ``kind``, at least ``minimum``; unset: ``default``. A bad value stops the operator, naming it:
    silently running with the default would hide a typo in the chart's values."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be at least {minimum:g}")
    return value


def _float(name: str, default: float, minimum: float = 0.0) -> float:
    return _number(name, default, float, minimum)


def _int(name: str, default: int, minimum: int = 0) -> int:
    return _number(name, default, int, minimum)


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("true", "false"):
        raise SettingsError(f"{name}={raw!r}: expected true or false")
    return raw == "true"


def _list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list; unset: ``default``; set but empty: nothing."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """Why env: one image serves every install; the chart (or tests) tune it without code."""

    watch_namespaces: tuple[str, ...] = ()  # empty: the whole cluster
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    s3_endpoint: str | None = None
    resync_seconds: float = 10.0  # every RARLJob is reconciled at least this often (deadlines, missed events)
    workers: int = 8  # concurrent reconciles (and API threads)
    metrics_port: int = 8080  # 0 disables the Prometheus endpoint
    termination_grace_seconds: int = 120
    network_policy: bool = True  # a NetworkPolicy per job: only the job's own pods reach its trainers
    pod_limits: PodPolicy = field(default_factory=PodPolicy)  # chart values policy.*; its image and endpoint are the two above

    @property
    def defaults(self) -> Defaults:
        return Defaults(trainer_image=self.trainer_image, s3_endpoint=self.s3_endpoint,
                        termination_grace_seconds=self.termination_grace_seconds, network_policy=self.network_policy)

    @property
    def policy(self) -> PodPolicy:
        """What a RARLJob may put into its pods: the chart's limits, with the operator's own image and endpoint."""
        return dataclasses.replace(self.pod_limits, trainer_image=self.trainer_image, s3_endpoint=self.s3_endpoint)

def from_env() -> Settings:
    namespaces = tuple(n.strip() for n in os.environ.get("RARL_WATCH_NAMESPACES", "").split(",") if n.strip())
    return Settings(
        watch_namespaces=namespaces,
        trainer_image=os.environ.get("RARL_TRAINER_IMAGE", Settings.trainer_image),
        s3_endpoint=os.environ.get(ENV_S3_ENDPOINT) or None,
        resync_seconds=_float("RARL_RESYNC_SECONDS", Settings.resync_seconds, minimum=0.05),
        workers=_int("RARL_WORKERS", Settings.workers, minimum=1),
        metrics_port=_int("RARL_METRICS_PORT", Settings.metrics_port),
        termination_grace_seconds=_int("RARL_TERMINATION_GRACE_SECONDS", Settings.termination_grace_seconds),
        network_policy=_bool("RARL_NETWORK_POLICY", Settings.network_policy),
        pod_limits=PodPolicy(
            allowed_images=_list("RARL_POLICY_ALLOWED_IMAGES", PodPolicy.allowed_images),
            allow_service_account=_bool("RARL_POLICY_ALLOW_SERVICE_ACCOUNT_NAME", PodPolicy.allow_service_account),
            allowed_s3_endpoints=_list("RARL_POLICY_ALLOWED_S3_ENDPOINTS", PodPolicy.allowed_s3_endpoints),
            fixed_secret_keys=_bool("RARL_POLICY_FIXED_SECRET_KEYS", PodPolicy.fixed_secret_keys),
            pod_label_keys=_list("RARL_POLICY_POD_LABEL_KEYS", PodPolicy.pod_label_keys),
            pod_annotation_keys=_list("RARL_POLICY_POD_ANNOTATION_KEYS", PodPolicy.pod_annotation_keys),
        ),
    )


SETTINGS = from_env()
