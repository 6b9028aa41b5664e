"""A Kubernetes API for tests: kmock's emulator served on 127.0.0.1, with its gaps fixed.

``KubeEmulator`` runs kmock's ``KubernetesEmulator`` on a free port in a
background thread, registers the RARLJob resource from the CRD, creates the
``default`` namespace and writes a kubeconfig, so that real ``kubectl``, the
``kubernetes`` client and kopf all talk to it. ``OperatorProcess`` runs
``kopf run -m rarl_operator`` against it as a subprocess (so a test can kill -9 it).

Gaps of kmock 0.8 fixed here (see STACK-NOTES.md):
- ``/api/v1/namespaces[/name]`` crashes kmock's path parser -> parse namespaces as a resource;
- core discovery answers groupVersion "/v1" -> "v1"; subresources copy the parent's
  short names and categories -> cleared (kubectl would map ``rj`` to ``rarljobs/status``);
- list responses lack kind/apiVersion and have resourceVersion "..." -> added;
- label selectors are ignored on list -> equality/existence selectors implemented;
- watch streams are sent as application/octet-stream -> application/json;
- no uid/creationTimestamp/resourceVersion/generation on create -> added (and
  resourceVersion bumped on every write, generation on spec changes);
- status subresource semantics: ``PATCH .../status`` changes only status, the main
  resource ignores status (as the real API server does for CRDs with ``subresources.status``);
- a POSTed CRD does not register its resource -> registered (and ``register_crd`` for tests);
- kubectl asks for server-side Tables -> rendered from the CRD's additionalPrinterColumns;
- protobuf request bodies -> refused with 415 instead of crashing;
- speed: kmock re-scans its whole request history and every stored object on each
  request (50 ms per request after a few hundred objects) -> in-flight history only,
  dict lookups by (resource, namespace, name).
Not emulated: garbage collection, admission, RBAC, schema validation, PUT.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kmock
import yaml
from kmock._internal import enums, parsing, rendering

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
KUBECTL = str(VENV_BIN / "kubectl")

# --------------------------------------------------------------------------- kmock patches

_orig_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock reads ``/api/v1/namespaces/x`` as namespace x with no resource; Namespaces are a resource."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "api" and parts[2] == "namespaces" and len(parts) <= 5:
        if len(parts) == 3 or len(parts) == 4 or (len(parts) == 5 and parts[4] in ("status", "finalize")):
            name = parts[3] if len(parts) >= 4 else None
            sub = parts[4] if len(parts) == 5 else None
            return parsing.ParsedPath("", parts[1], "namespaces", None, name, sub)
    return _orig_parse_path(path)


parsing.parse_path = _parse_path


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _human_age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    try:
        then = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    secs = int((dt.datetime.now(dt.timezone.utc) - then).total_seconds())
    if secs < 120:
        return f"{max(secs, 0)}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 48 * 3600:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def _jsonpath(obj: Any, path: str) -> Any:
    """The simple ``.a.b.c`` JSONPaths that printer columns use."""
    for part in path.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _match_labels(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


class PatchedEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus the fixes listed in the module docstring."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._rv = itertools.count(1)
        self._printer_columns: dict[kmock.resource, list[dict[str, Any]]] = {}
        self._status_subresource: set[kmock.resource] = set()
        self._kinds: dict[kmock.resource, str] = {}
        self._inflight: set[rendering.Request] = set()
        # Watches first (above the fallback) to stream with a JSON content type.
        self[enums.action.WATCH] << kmock.headers({"Content-Type": "application/json"}) << self._serve_watch
        # A real API server answers a create with 201 Created; the kubernetes client returns None for a 200.
        self[enums.action.CREATE] << 201 << self._serve_create

    # ---------------------------------------------------------------- registration

    def register_crd(self, crd: dict[str, Any]) -> None:
        spec, names = crd["spec"], crd["spec"]["names"]
        for version in spec["versions"]:
            res = kmock.resource(spec["group"], version["name"], names["plural"])
            subs = set((version.get("subresources") or {}).keys())
            self.resources[res] = kmock.ResourceInfo(
                kind=names["kind"], singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                verbs={"create", "delete", "get", "list", "patch", "watch", "update", "deletecollection"},
                shortnames=set(names.get("shortNames") or []), categories=set(names.get("categories") or []),
                subresources=subs,
            )
            self._kinds[res] = names["kind"]
            if "status" in subs:
                self._status_subresource.add(res)
            if version.get("additionalPrinterColumns"):
                self._printer_columns[res] = list(version["additionalPrinterColumns"])

    # ---------------------------------------------------------------- request fixes

    async def _handle(self, request: rendering.Request) -> Any:
        ctype = (request.headers.get("Content-Type") or "").lower()
        if "protobuf" in ctype:
            raise kmock.KubernetesError(status=415, reason="UnsupportedMediaType",
                                        message="the emulator speaks JSON only")
        # kmock matches each request by scanning its whole request history (O(requests) per request,
        # 50 ms after a few thousand): keep only the requests still being served.
        self._inflight.add(request)
        self._requests[:] = [r for r in self._requests if r in self._inflight]
        try:
            return await self._handle_fixed(request)
        finally:
            self._inflight.discard(request)

    async def _handle_fixed(self, request: rendering.Request) -> Any:
        res = request.resource
        if res is not None and isinstance(request.data, dict):
            if request.action == enums.action.CREATE:
                self._on_create(res, request)
            elif request.action == enums.action.UPDATE and request.name is not None:
                self._on_patch(res, request)
        elif res is not None and request.action == enums.action.UPDATE and isinstance(request.data, list):
            request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": str(next(self._rv))})
        return await super()._handle(request)

    def _on_create(self, res: kmock.resource, request: rendering.Request) -> None:
        data = request.data
        meta = data.setdefault("metadata", {})
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = str(next(self._rv))
        meta.setdefault("generation", 1)
        if res.plural == "customresourcedefinitions" and res.group == "apiextensions.k8s.io":
            self.register_crd(data)

    def _on_patch(self, res: kmock.resource, request: rendering.Request) -> None:
        data = request.data
        if res in self._status_subresource:
            if request.subresource == "status":
                for key in list(data):
                    if key not in ("status", "metadata"):
                        del data[key]
                data.setdefault("metadata", {}).pop("generation", None)
            elif request.subresource is None:
                data.pop("status", None)
        meta = data.get("metadata")
        if not isinstance(meta, dict):
            meta = data["metadata"] = {}
        for key in ("uid", "creationTimestamp", "resourceVersion", "generation"):
            meta.pop(key, None)
        meta["resourceVersion"] = str(next(self._rv))
        if "spec" in data and request.subresource is None:
            key = (res, request.namespace, request.name)
            if key in self.objects and not self.objects[key].deleted:
                old = dict(self.objects[key].raw)
                if old.get("spec") != _merged(old.get("spec"), data["spec"]):
                    meta["generation"] = int((old.get("metadata") or {}).get("generation") or 1) + 1

    # ---------------------------------------------------------------- speed

    def _KubernetesEmulator__get_objs(self, request: rendering.Request, strict: bool) -> list[Any]:
        """kmock scans every object of every kind per request (O(N), ~50 ms at 250 objects): index instead."""
        store = self.objects._objects
        res = request.resource
        if res is None:
            return []
        res = kmock.resource(res.group, res.version, res.plural)
        if request.name is not None and (strict or request.namespace is not None):
            obj = store.get((res, request.namespace, request.name))
            return [obj] if obj is not None else []
        want = (res.group, res.version, res.plural)
        return [obj for (r, ns, name), obj in store.items()
                if (r.group, r.version, r.plural) == want
                and (ns == request.namespace if strict else request.namespace is None or ns == request.namespace)
                and (request.name is None or name == request.name)]

    def _get_resources(self) -> list[kmock.resource]:
        found = set(kmock.KubernetesScaffold._get_resources(self))
        found.update({r for r, _, _ in self.objects._objects})
        return list(found)

    # ---------------------------------------------------------------- response fixes

    async def _serve_version(self, request: rendering.Request) -> Any:
        doc = await super()._serve_version(request)
        doc["groupVersion"] = doc["groupVersion"].lstrip("/")
        for entry in doc.get("resources", []):
            if "/" in entry["name"]:
                entry["shortNames"], entry["categories"] = [], []
                entry["verbs"] = ["get", "patch", "update"]
            if entry.get("namespaced") is None:
                entry["namespaced"] = True
        return doc

    def _kind(self, res: kmock.resource) -> str:
        if res in self._kinds:
            return self._kinds[res]
        info = self.resources[res] if res in self.resources else None
        return (info.kind if info is not None and info.kind else (res.plural or "").capitalize())

    def _wants_table(self, request: rendering.Request) -> bool:
        return "as=Table" in (request.headers.get("Accept") or "")

    async def _serve_list(self, request: rendering.Request) -> Any:
        doc = await super()._serve_list(request)
        res = request.resource
        selector = request.params.get("labelSelector")
        items = doc["items"]
        if selector:
            items = [o for o in items if _match_labels((o.get("metadata") or {}).get("labels") or {}, selector)]
        if self._wants_table(request):
            return self._table(res, items)
        api_version = f"{res.group}/{res.version}" if res.group else res.version
        return {"kind": f"{self._kind(res)}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": str(next(self._rv))}, "items": items}

    async def _serve_fetch(self, request: rendering.Request) -> Any:
        obj = await super()._serve_fetch(request)
        if self._wants_table(request):
            return self._table(request.resource, [obj])
        return obj

    def _table(self, res: kmock.resource, items: list[dict[str, Any]]) -> dict[str, Any]:
        columns = self._printer_columns.get(res) or [
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        defs = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
        defs += [{"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                  "description": c.get("description", c["name"]), "priority": c.get("priority", 0)} for c in columns]
        rows = []
        for obj in items:
            cells: list[Any] = [obj["metadata"]["name"]]
            for c in columns:
                value = _jsonpath(obj, c["jsonPath"])
                cells.append(_human_age(value) if c.get("type") == "date" else value)
            rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata",
                                                    "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}})
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": str(next(self._rv))}, "columnDefinitions": defs, "rows": rows}


def _merged(old: Any, patch: Any) -> Any:
    if isinstance(old, dict) and isinstance(patch, dict):
        out = dict(old)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _merged(old.get(k), v)
        return out
    return copy.deepcopy(patch)


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class KubeEmulator:
    """The emulator on 127.0.0.1 in a background thread: ``with KubeEmulator(tmp) as kube: ...``."""

    def __init__(self, workdir: Path, crds: list[dict[str, Any]] | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.crds = crds
        self.port = 0
        self.emulator: PatchedEmulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> KubeEmulator:
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the API emulator did not start: {self._error!r}")
        self._write_kubeconfig()
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        emulator = PatchedEmulator()
        emulator.resources.load_bundled()
        for crd in self.crds if self.crds is not None else [_rarl_crd()]:
            emulator.register_crd(crd)
        emulator.objects["v1/namespaces", None, "default"] = {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "default", "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                         "resourceVersion": "1"},
            "status": {"phase": "Active"},
        }
        self.emulator = emulator
        async with emulator, kmock.Server(emulator, host="127.0.0.1", port=None) as server:
            self.port = server.port
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _write_kubeconfig(self) -> None:
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester",
                                                         "namespace": "default"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(cfg))

    # ---------------------------------------------------------------- test helpers

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30) -> str:
        """Run the real kubectl against the emulator; returns stdout."""
        cmd = [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(cmd, check=False, input=input, capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc.stdout

    def client(self) -> Any:
        """A kubernetes ApiClient configured from the kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/merge-patch+json") -> Any:
        """A raw JSON call through the kubernetes client (for kinds and verbs without typed helpers)."""
        api = self.client()
        try:
            resp = api.call_api(path, method, body=body, header_params={"Content-Type": content_type,
                                                                        "Accept": "application/json"},
                                auth_settings=["BearerToken"], _preload_content=False,
                                _return_http_data_only=True)
            return json.loads(resp.data) if resp.data else None
        finally:
            api.close()

    def objects(self, plural: str, namespace: str = "default") -> dict[str, dict[str, Any]]:
        """Live objects of a resource ("batch/v1/jobs", "v1/pods", ...) by name, read in memory."""
        assert self.emulator is not None
        res = kmock.resource(plural)
        out = {}
        for (r, ns, name), obj in list(self.emulator.objects.items()):
            if r == res and ns == namespace and not obj.deleted:
                out[name] = copy.deepcopy(dict(obj.raw))
        return out

    def get(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.objects(plural, namespace).get(name)


def _rarl_crd() -> dict[str, Any]:
    try:
        from rarl.api.crd import build_crd

        return build_crd()
    except ImportError:
        return yaml.safe_load((REPO / "charts/rarl-operator/crds/rarljobs.rarl.dev.yaml").read_text())


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail with ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}; last value: {last!r}")


# --------------------------------------------------------------------------- the operator


class OperatorProcess:
    """``kopf run -m rarl_operator --standalone -A`` against the emulator, as a killable subprocess."""

    def __init__(self, kube: KubeEmulator, log_path: Path, env: dict[str, str] | None = None):
        self.kube = kube
        self.log_path = Path(log_path)
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.liveness_port = 0
        self.metrics_port = 0

    def start(self, wait: bool = True) -> OperatorProcess:
        self.liveness_port, self.metrics_port = free_port(), free_port()
        env = {**self.kube.env(), "RARL_METRICS_PORT": str(self.metrics_port), "PYTHONUNBUFFERED": "1",
               "RARL_RESYNC_SECONDS": "0.5", **self.extra_env}
        cmd = [sys.executable, "-m", "kopf", "run", "-m", "rarl_operator", "--standalone", "-A",
               f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz", "--log-format=plain"]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                     start_new_session=True)
        if wait:
            wait_for(self.healthy, timeout=30, interval=0.1, what="operator liveness endpoint")
        return self

    def healthy(self) -> bool:
        import urllib.request

        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited ({self.proc and self.proc.returncode}):\n{self.logs()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as resp:
            return resp.read().decode()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crashed or evicted operator."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()


if __name__ == "__main__":  # python -m tests.support.kube: a standalone emulator for manual kubectl use
    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else ".rarl/kube")
    with KubeEmulator(workdir) as kube:
        print(f"export KUBECONFIG={kube.kubeconfig}  # {kube.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


# --------------------------------------------------------------------------- the kubelet, played by tests

RJ = "rarl.dev/v1alpha1/rarljobs"
JOBS = "batch/v1/jobs"
PODS = "v1/pods"


def wait_job(kube: KubeEmulator, name: str, attempt: int, timeout: float = 10) -> dict[str, Any]:
    return wait_for(lambda: kube.get(JOBS, f"{name}-attempt-{attempt}"), timeout=timeout,
                    what=f"Job {name}-attempt-{attempt}")


class Kubelet:
    """Plays the Job controller and kubelet: creates pods, runs them, ends them, marks Jobs."""

    def __init__(self, kube: KubeEmulator):
        self.kube = kube

    def start_pods(self, name: str, attempt: int, nodes: int = 1, phase: str = "Running") -> list[str]:
        job = wait_job(self.kube, name, attempt)
        template = job["spec"]["template"]
        names = []
        for index in range(nodes):
            pod_name = f"{name}-attempt-{attempt}-{index}"
            pod = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": "default", "labels": dict(template["metadata"]["labels"]),
                             "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
                "spec": template["spec"],
            }
            self.kube.call("POST", "/api/v1/namespaces/default/pods", pod, content_type="application/json")
            self.pod_status(pod_name, {"phase": phase})
            names.append(pod_name)
        self.job_status(name, attempt, {"active": nodes})
        return names

    def pod_status(self, pod: str, status: dict[str, Any]) -> None:
        self.kube.call("PATCH", f"/api/v1/namespaces/default/pods/{pod}/status", {"status": status})

    def exit_pod(self, pod: str, code: int, message: str = "", conditions: list | None = None) -> None:
        status: dict[str, Any] = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": "trainer", "ready": False, "restartCount": 0, "image": "x",
                                   "imageID": "", "state": {"terminated": {"exitCode": code, "message": message,
                                                                           "reason": "Error" if code else "Completed"}}}],
        }
        if conditions:
            status["conditions"] = conditions
        self.pod_status(pod, status)

    def job_status(self, name: str, attempt: int, status: dict[str, Any]) -> None:
        self.kube.call("PATCH", f"/apis/batch/v1/namespaces/default/jobs/{name}-attempt-{attempt}/status",
                       {"status": status})

    def complete(self, name: str, attempt: int, nodes: int = 1) -> None:
        for index in range(nodes):
            self.exit_pod(f"{name}-attempt-{attempt}-{index}", 0)
        self.job_status(name, attempt, {"active": 0, "succeeded": nodes, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]})

    def fail(self, name: str, attempt: int, code: int, message: str = "", disrupted: bool = False) -> None:
        conds = [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}] if disrupted else None
        self.exit_pod(f"{name}-attempt-{attempt}-0", code, message, conds)
        self.job_status(name, attempt, {"active": 0, "failed": 1, "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
