"""A thin, blocking Kubernetes API client for the reconciler (run in worker threads).

Raw paths and JSON dicts through the official client's ``ApiClient.call_api``:
no model (de)serialisation cost, and the same connection settings as kubectl
(in-cluster config, else KUBECONFIG).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from rarl.api.types import API_GROUP, API_VERSION, PLURAL

_PATHS = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("v1", "Event"): "/api/v1/namespaces/{ns}/events",
    ("rbac.authorization.k8s.io/v1", "Role"): "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs",
}
RJ_PATH = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{{ns}}/{PLURAL}"


def load_config() -> client.ApiClient:
    """In-cluster first (the operator's pod), else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class Api:
    """Idempotent verbs: create treats 409 as done, delete treats 404 as done."""

    def __init__(self, api_client: client.ApiClient | None = None):
        self._client = api_client
        self._lock = threading.Lock()

    @property
    def client(self) -> client.ApiClient:
        with self._lock:
            if self._client is None:
                self._client = load_config()
            return self._client

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        resp = self.client.call_api(
            path, method, query_params=[], body=body,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
            _request_timeout=30,
        )
        data = resp.data
        return json.loads(data) if data else None

    def create(self, obj: dict[str, Any]) -> bool:
        """Create a child; False when it already exists (a repeated or concurrent reconcile)."""
        path = _PATHS[(obj["apiVersion"], obj["kind"])].format(ns=obj["metadata"]["namespace"])
        try:
            self._call("POST", path, obj)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def delete_job(self, namespace: str, name: str) -> bool:
        """Background propagation: the Job goes now, its pods get SIGTERM (and checkpoint) after."""
        path = _PATHS[("batch/v1", "Job")].format(ns=namespace) + f"/{name}"
        try:
            self._call("DELETE", path, {"propagationPolicy": "Background"})
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        path = RJ_PATH.format(ns=namespace) + f"/{name}/status"
        self._call("PATCH", path, {"status": patch}, content_type="application/merge-patch+json")

    def delete_rarljob(self, namespace: str, name: str) -> None:
        path = RJ_PATH.format(ns=namespace) + f"/{name}"
        try:
            self._call("DELETE", path, {"propagationPolicy": "Background"})
        except ApiException as exc:
            if exc.status != 404:
                raise
