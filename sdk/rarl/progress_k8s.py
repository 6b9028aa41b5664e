"""The trainer's progress reporter on Kubernetes: patches its own RARLJob's status.

Rank 0 calls ``report`` every logged step; at most one PATCH per ``min_interval``
seconds reaches the API server (the last report is always flushed by ``close``).
The pod's ServiceAccount may only get/patch this one object's status, so this is
all it does. Progress is advisory: no error ever propagates into training.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from rarl.api.reports import Progress
from rarl.api.types import API_GROUP, API_VERSION, PLURAL

log = logging.getLogger("rarl.progress")


def _load_client() -> Any:
    """In-cluster config (the trainer pod), else the kubeconfig (local runs against a cluster)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def status_patch(progress: Progress) -> dict[str, Any]:
    """The camelCase ``status`` fields a progress snapshot sets on a RARLJob (unset ones are left alone).

    Not ``totalSteps`` or ``modelURI``: the operator writes those (one writer per field, see
    ``rarl.api.vocabulary.OPERATOR_STATUS_FIELDS``).
    """
    patch: dict[str, Any] = {"step": progress.step}
    if progress.stage is not None:
        patch["stage"] = progress.stage
    if progress.reward is not None:
        patch["reward"] = round(float(progress.reward), 6)
    if progress.metrics:
        patch["metrics"] = {k: float(v) for k, v in progress.metrics.items()}
    if progress.latest_checkpoint:
        patch["latestCheckpoint"] = progress.latest_checkpoint
    if progress.eta_seconds is not None:
        patch["etaSeconds"] = round(float(progress.eta_seconds), 1)
    return patch


class KubernetesStatusReporter:
    """ProgressReporter that merge-patches ``status`` of RARLJob ``namespace/name``."""

    def __init__(self, name: str, namespace: str, *, min_interval: float = 5.0, api_client: Any = None,
                 timeout: float = 5.0):
        self.name, self.namespace = name, namespace
        self.min_interval = min_interval
        self.timeout = timeout
        self.path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        self._client = api_client
        self._lock = threading.Lock()
        self._pending: dict[str, Any] | None = None
        self._last_sent = float("-inf")
        self._disabled = False
        self._warned = False
        self.sent = 0  # successful patches (for tests and logs)

    def report(self, progress: Progress) -> None:
        try:
            with self._lock:
                self._pending = status_patch(progress)
                if time.monotonic() - self._last_sent >= self.min_interval:
                    self._flush_locked()
        except Exception as exc:  # never into training
            self._warn(exc)

    def close(self) -> None:
        try:
            with self._lock:
                self._flush_locked()
        except Exception as exc:
            self._warn(exc)

    def _flush_locked(self) -> None:
        if self._pending is None or self._disabled:
            return
        patch, self._pending = self._pending, None
        self._last_sent = time.monotonic()
        try:
            if self._client is None:
                self._client = _load_client()
            self._client.call_api(
                self.path, "PATCH", body={"status": patch},
                header_params={"Content-Type": "application/merge-patch+json", "Accept": "application/json"},
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                _request_timeout=self.timeout,
            )
            self.sent += 1
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status in (401, 403, 404):  # no permission or no object: retrying would only spam
                self._disabled = True
            self._warn(exc)

    def _warn(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            reason = getattr(exc, "reason", None) or type(exc).__name__
            log.warning("progress reports to RARLJob %s/%s failed (%s); training continues",
                        self.namespace, self.name, reason)
            log.debug("details: %s", json.dumps(str(exc))[:500])
