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
from rarl.api.vocabulary import ANNOTATION_OPERATOR_RECORD

_PATHS = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("v1", "Event"): "/api/v1/namespaces/{ns}/events",
    ("rbac.authorization.k8s.io/v1", "Role"): "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs",
    ("networking.k8s.io/v1", "NetworkPolicy"): "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
}
RJ_PATH = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{{ns}}/{PLURAL}"


def load_config() -> client.ApiClient:
    """In-cluster first (the operator's pod), else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class ChildNotOwned(Exception):
    """A child's name is taken by an object that lacks this RARLJob's ownerReference: it is not used."""

    def __init__(self, kind: str, name: str, owners: list[str]):
        self.kind, self.name, self.owners = kind, name, owners
        owned_by = f"owned by {', '.join(owners)}" if owners else "it has no owner"
        super().__init__(f"{kind} {name} already exists and is not owned by this RARLJob ({owned_by})")


def _owner_uids(obj: dict[str, Any]) -> set[str]:
    return {ref.get("uid") for ref in (obj.get("metadata") or {}).get("ownerReferences") or [] if ref.get("uid")}


class Api:
    """Idempotent verbs: create treats 409 as done (for this RARLJob's own child only), delete treats 404 as done."""

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
        """Create a child; False when it already exists with the owner ``obj`` names (a repeated reconcile).

        A 409 is success only for our own child: an object of that name without ``obj``'s ownerReference
        (uid) raises ChildNotOwned, since adopting it would hand someone else's ConfigMap, ServiceAccount,
        Role, RoleBinding, Service or Job to this job's trainer.
        """
        path = _PATHS[(obj["apiVersion"], obj["kind"])].format(ns=obj["metadata"]["namespace"])
        try:
            self._call("POST", path, obj)
            return True
        except ApiException as exc:
            if exc.status != 409:
                raise
        name = obj["metadata"]["name"]
        existing = self._call("GET", f"{path}/{name}") or {}
        if not _owner_uids(obj) & _owner_uids(existing):
            refs = (existing.get("metadata") or {}).get("ownerReferences") or []
            raise ChildNotOwned(obj["kind"], name, [f"{r.get('kind')}/{r.get('name')}" for r in refs])
        return False

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

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any], record: str | None = None) -> None:
        """Merge-patch the status; a ``record`` (the operator's copy of the fields it owns) is written first.

        The record is an annotation on the RARLJob itself: the trainer's Role may patch ``/status`` but not
        the object's metadata, so the record is the copy the operator trusts. Record first, then status: a
        crash in between leaves a status that the next reconcile rewrites from the record.
        """
        path = RJ_PATH.format(ns=namespace) + f"/{name}"
        if record is not None:
            self._call("PATCH", path, {"metadata": {"annotations": {ANNOTATION_OPERATOR_RECORD: record}}},
                       content_type="application/merge-patch+json")
        if patch:
            self._call("PATCH", path + "/status", {"status": patch}, content_type="application/merge-patch+json")

    def delete_rarljob(self, namespace: str, name: str) -> None:
        path = RJ_PATH.format(ns=namespace) + f"/{name}"
        try:
            self._call("DELETE", path, {"propagationPolicy": "Background"})
        except ApiException as exc:
            if exc.status != 404:
                raise
