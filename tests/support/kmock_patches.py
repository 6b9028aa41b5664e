"""kmock's ``KubernetesEmulator`` with the gaps fixed that kubectl, the kubernetes client and kopf hit.

Importing this module patches kmock's path parser; ``PatchedEmulator`` carries the other fixes.
Both reach into kmock's private internals (``kmock._internal``, name-mangled methods), which is
why pyproject.toml pins kmock.

Gaps of kmock 0.8 fixed here:
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

import copy
import datetime as dt
import itertools
import uuid
from typing import Any

import kmock
from kmock._internal import enums, parsing, rendering

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


def timestamp_now() -> str:
    """The API server's timestamp format (RFC 3339, seconds, UTC)."""
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
        meta.setdefault("creationTimestamp", timestamp_now())
        meta["resourceVersion"] = str(next(self._rv))
        meta.setdefault("generation", 1)
        if res.plural == "customresourcedefinitions" and res.group == "apiextensions.k8s.io":
            self.register_crd(data)

    def _on_patch(self, res: kmock.resource, request: rendering.Request) -> None:
        data = request.data
        if res in self._status_subresource:
            if request.subresource == "status":
                # as the API server: a /status write changes the status stanza only, metadata included
                # (so the trainer, which may patch only its job's status, cannot touch annotations)
                for key in list(data):
                    if key != "status":
                        del data[key]
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
