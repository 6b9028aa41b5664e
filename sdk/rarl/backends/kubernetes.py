"""RARLJobs as custom resources on a Kubernetes cluster (the operator runs them)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from rarl.api.types import API_GROUP, API_VERSION, PLURAL, RARLJob
from rarl.api.vocabulary import LABEL_ATTEMPT, LABEL_JOB, TERMINAL_PHASES
from rarl.backends.base import Backend, JobEvent
from rarl.errors import BackendUnavailable, InvalidArgument, InvalidSpec, JobNotFound, RARLError

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
CRD_NAME = f"{PLURAL}.{API_GROUP}"
TIMEOUT = (5, 30)  # connect, read (seconds)


class KubernetesBackend(Backend):
    """Talk to the cluster of a kubeconfig (or the in-cluster config).

    Raises ``BackendUnavailable`` when no cluster is configured or reachable,
    or when the RARLJob CRD is not installed; ``JobNotFound`` for unknown jobs.
    """

    name = "kubernetes"

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None):
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        try:
            api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                active = next((c for c in contexts if c["name"] == context), active)
            default_ns = (active or {}).get("context", {}).get("namespace") or "default"
        except (ConfigException, OSError, TypeError) as exc:
            if kubeconfig or context:
                raise BackendUnavailable(f"cannot load kubeconfig {kubeconfig or '(default)'}: {exc}") from None
            try:
                config.load_incluster_config()
            except ConfigException:
                raise BackendUnavailable(
                    "no Kubernetes cluster configured: set KUBECONFIG or --kubeconfig, or use --backend local"
                ) from None
            api_client = client.ApiClient()
            default_ns = _incluster_namespace()
        api_client.configuration.retries = 1
        self.host = api_client.configuration.host
        self.namespace = namespace or default_ns
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    # ------------------------------------------------------------------ error mapping

    def _call(self, what: str, fn, *args, name: str | None = None, **kwargs) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=TIMEOUT, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                if name is not None and self._crd_installed():
                    raise JobNotFound(f"RARLJob {name!r} not found in namespace {self.namespace!r}") from None
                raise BackendUnavailable(
                    f"the RARLJob CRD ({CRD_NAME}) is not installed on {self.host}: "
                    "install the operator's Helm chart or run `rarlctl crd | kubectl apply -f -`"
                ) from None
            if exc.status == 409:
                raise RARLError(f"RARLJob {name!r} already exists in namespace {self.namespace!r}") from None
            if exc.status in (401, 403):
                raise BackendUnavailable(f"not allowed to {what} on {self.host}: {exc.reason}") from None
            if exc.status == 422:
                raise RARLError(f"the API server rejected the RARLJob: {_api_message(exc)}") from None
            raise BackendUnavailable(f"{what} failed on {self.host}: HTTP {exc.status} {exc.reason}") from None
        except (HTTPError, OSError) as exc:
            raise BackendUnavailable(f"cannot reach the Kubernetes API at {self.host}: {type(exc).__name__}") from None

    def _crd_installed(self) -> bool:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, self.namespace, PLURAL, limit=1,
                                                      _request_timeout=TIMEOUT)
            return True
        except (ApiException, HTTPError, OSError):  # the probe failed: report the CRD as missing
            return False

    # ------------------------------------------------------------------ API

    def submit(self, job: RARLJob) -> RARLJob:
        from rarl.api.validation import cluster_problems

        if problems := cluster_problems(job):
            raise InvalidSpec(problems)
        body = job.to_dict(include_status=False)
        body["metadata"]["namespace"] = job.metadata.namespace or self.namespace
        created = self._call("create RARLJobs", self.custom.create_namespaced_custom_object,
                             API_GROUP, API_VERSION, body["metadata"]["namespace"], PLURAL, body, name=job.name)
        return _to_job(created)

    def get(self, name: str) -> RARLJob:
        obj = self._call("get RARLJobs", self.custom.get_namespaced_custom_object,
                         API_GROUP, API_VERSION, self.namespace, PLURAL, name, name=name)
        return _to_job(obj)

    def list(self, labels: dict[str, str] | None = None, namespace: str | None = None) -> list[RARLJob]:
        selector = ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or None
        kwargs = {"label_selector": selector} if selector else {}
        data = self._call("list RARLJobs", self.custom.list_namespaced_custom_object,
                          API_GROUP, API_VERSION, namespace or self.namespace, PLURAL, **kwargs)
        jobs = []
        for obj in data.get("items", []):
            meta_labels = (obj.get("metadata") or {}).get("labels") or {}
            if labels and any(meta_labels.get(k) != v for k, v in labels.items()):
                continue  # filter again: not every API server honours selectors
            try:
                jobs.append(_to_job(obj))
            except RARLError:
                continue
        return sorted(jobs, key=lambda j: j.name)

    def _patch_suspend(self, name: str, value: bool) -> RARLJob:
        body = {"spec": {"runPolicy": {"suspend": value}}}
        obj = self._call("patch RARLJobs", self.custom.patch_namespaced_custom_object,
                         API_GROUP, API_VERSION, self.namespace, PLURAL, name, body, name=name)
        return _to_job(obj)

    def suspend(self, name: str) -> RARLJob:
        return self._patch_suspend(name, True)

    def resume(self, name: str) -> RARLJob:
        return self._patch_suspend(name, False)

    def delete(self, name: str) -> None:
        self._call("delete RARLJobs", self.custom.delete_namespaced_custom_object,
                   API_GROUP, API_VERSION, self.namespace, PLURAL, name, name=name,
                   propagation_policy="Background")

    def _pod(self, name: str, attempt: int, node: int) -> str | None:
        pods = self._call("list pods", self.core.list_namespaced_pod, self.namespace,
                          label_selector=f"{LABEL_JOB}={name},{LABEL_ATTEMPT}={attempt}")
        for pod in pods.items:
            meta = pod.metadata
            labels, annotations = meta.labels or {}, meta.annotations or {}
            if labels.get(LABEL_JOB) != name or labels.get(LABEL_ATTEMPT) != str(attempt):
                continue
            if str(annotations.get(COMPLETION_INDEX, labels.get(COMPLETION_INDEX, "0"))) == str(node):
                return meta.name
        return None

    def logs(self, name: str, follow: bool = False, node: int = 0, attempt: int | None = None,
             poll_interval: float = 2.0) -> Iterator[str]:
        job = self.get(name)
        if node < 0 or node >= job.spec.resources.nodes:
            raise InvalidArgument(f"node: job {name!r} has nodes 0..{job.spec.resources.nodes - 1}; got {node}")
        current = job.status.attempt or 0
        if attempt is not None:
            if not 1 <= attempt <= max(current, 1):
                raise InvalidArgument(f"attempt: job {name!r} has attempts 1..{current}; got {attempt}")
            pod = self._pod(name, attempt, node)
            if pod is None:
                raise RARLError(f"job {name!r}: the pod of attempt {attempt} (node {node}) is gone")
            text = self._call("read pod logs", self.core.read_namespaced_pod_log, pod, self.namespace)
            yield from str(text).splitlines()  # an earlier attempt's log is complete: no --follow
            return
        attempt = current
        pod = self._pod(name, attempt, node)
        while pod is None and follow:
            if job.status.phase in TERMINAL_PHASES:
                return
            time.sleep(poll_interval)
            job = self.get(name)
            attempt = job.status.attempt
            pod = self._pod(name, attempt, node)
        if pod is None:
            raise RARLError(f"job {name!r} has no pod for node {node} of attempt {attempt} (yet)")
        if not follow:
            text = self._call("read pod logs", self.core.read_namespaced_pod_log, pod, self.namespace)
            yield from str(text).splitlines()
            return
        from kubernetes.client.exceptions import ApiException

        try:
            stream = self.core.read_namespaced_pod_log(pod, self.namespace, follow=True, _preload_content=False)
            for raw in stream.stream():
                yield from raw.decode(errors="replace").splitlines()
        except ApiException as exc:
            raise BackendUnavailable(f"cannot stream logs of pod {pod}: HTTP {exc.status} {exc.reason}") from None

    def events(self, name: str) -> list[JobEvent]:
        data = self._call("list events", self.core.list_namespaced_event, self.namespace,
                          field_selector=f"involvedObject.name={name}")
        out: list[JobEvent] = []
        for ev in data.items:
            involved = ev.involved_object
            if involved is None or involved.name != name or (involved.kind and involved.kind != "RARLJob"):
                continue
            when = ev.last_timestamp or ev.event_time or ev.first_timestamp
            out.append(JobEvent(type=ev.type or "", reason=ev.reason or "", message=ev.message or "",
                                time=when.isoformat() if hasattr(when, "isoformat") else when))
        return sorted(out, key=lambda e: e.time or "")


def _to_job(obj: dict[str, Any]) -> RARLJob:
    """A RARLJob from the API's object (status fields we do not know are dropped, not fatal)."""
    from rarl.api.types import RARLJobStatus
    from rarl.api.validation import validate_document

    obj = dict(obj)
    obj.setdefault("apiVersion", f"{API_GROUP}/{API_VERSION}")
    obj.setdefault("kind", "RARLJob")
    status = obj.pop("status", None)
    job, problems = validate_document(obj)
    if job is None:
        name = (obj.get("metadata") or {}).get("name")
        raise RARLError(f"RARLJob {name!r} on the cluster does not validate: {problems[0] if problems else ''}")
    if isinstance(status, dict):
        known = {f.alias or n for n, f in RARLJobStatus.model_fields.items()}
        try:
            job.status = RARLJobStatus.model_validate({k: v for k, v in status.items() if k in known})
        except ValueError:
            job.status = RARLJobStatus()
    return job


def _incluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


def _api_message(exc: Any) -> str:
    import json

    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
