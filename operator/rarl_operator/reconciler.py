"""Level-triggered reconciliation: a de-duplicating work queue of RARLJob keys.

Any watch event (the RARLJob, one of its Jobs or pods) and a periodic resync
enqueue the RARLJob's key; a fixed pool of workers takes keys one at a time per
key, observes the current state (kopf's in-memory caches of Jobs and pods),
asks ``phases.decide`` for a plan and carries it out with idempotent API calls.
Nothing is remembered between two reconciles of a key except what is in the API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import kopf

from rarl import manifests
from rarl.api.validation import cluster_problems, validate_document
from rarl.api.vocabulary import ANNOTATION_RESTARTS, ANNOTATION_TRAINING_SETTINGS, LABEL_ATTEMPT
from rarl_operator import metrics
from rarl_operator.api import Api
from rarl_operator.phases import JobView, Observed, Plan, PodView, decide
from rarl_operator.settings import Settings

log = logging.getLogger("rarl_operator")
Key = tuple[str, str]  # (namespace, name)


# --------------------------------------------------------------------------- views of children


def _attempt(labels: Mapping[str, str] | None) -> int:
    try:
        return int((labels or {}).get(LABEL_ATTEMPT, "0"))
    except ValueError:
        return 0


def _true(conditions: Iterable[Mapping[str, Any]] | None, *types: str) -> Mapping[str, Any] | None:
    for cond in conditions or []:
        if cond.get("type") in types and cond.get("status") == "True":
            return cond
    return None


def job_view(body: Mapping[str, Any]) -> JobView:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status") or {}
    conds = status.get("conditions")
    failed = _true(conds, "Failed", "FailureTarget")
    completions = spec.get("completions") or 1
    annotations = meta.get("annotations") or {}
    try:
        restarts = int(annotations.get(ANNOTATION_RESTARTS, "0"))
    except ValueError:
        restarts = 0
    return JobView(
        name=meta.get("name", ""),
        attempt=_attempt(meta.get("labels")),
        complete=bool(_true(conds, "Complete", "SuccessCriteriaMet")) or (status.get("succeeded") or 0) >= completions,
        failed=failed is not None,
        failed_reason=(failed or {}).get("reason") or "",
        restarts=restarts,
        deleting=bool(meta.get("deletionTimestamp")),
        started_with=_digest(annotations.get(ANNOTATION_TRAINING_SETTINGS)),
    )


def _digest(value: str | None) -> dict[str, str] | None:
    """The training-settings annotation read back; None when absent or not a map of strings."""
    try:
        digest = json.loads(value) if value else None
    except ValueError:
        return None
    if not isinstance(digest, dict) or not all(isinstance(v, str) for v in digest.values()):
        return None
    return digest


def pod_view(body: Mapping[str, Any]) -> PodView:
    meta, status = body.get("metadata", {}), body.get("status") or {}
    codes: list[int] = []
    message = ""
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term is not None and term.get("exitCode") is not None:
            codes.append(int(term["exitCode"]))
            message = message or (term.get("message") or "")
    disrupted = bool(_true(status.get("conditions"), "DisruptionTarget")) or status.get("reason") in (
        "Evicted", "Preempting", "Terminated", "Shutdown", "NodeShutdown")
    return PodView(
        name=meta.get("name", ""),
        attempt=_attempt(meta.get("labels")),
        phase=status.get("phase") or "Pending",
        exit_codes=tuple(codes),
        message=message[-2000:],
        disrupted=disrupted,
    )


def rj_snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached copy of the fields the reconciler reads (kopf bodies are live views)."""
    meta = body.get("metadata", {})
    keep = ("name", "namespace", "uid", "generation", "labels", "annotations", "creationTimestamp",
            "deletionTimestamp", "resourceVersion")
    return copy.deepcopy({
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in keep if k in meta},
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    })


def observe(body: Mapping[str, Any], jobs: Iterable[JobView], pods: Iterable[PodView], now: dt.datetime) -> Observed:
    meta = body.get("metadata", {})
    doc = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
           "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                        "labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}},
           "spec": body.get("spec")}
    job, problems = validate_document(doc)
    admitted = bool((body.get("status") or {}).get("phase"))  # jobs an older operator started are left alone
    if job is not None and not admitted and (problems := cluster_problems(job)):  # checkpoints dying with the pod
        job = None
    by_attempt: dict[int, JobView] = {}
    for view in jobs:
        if view.attempt > 0:
            by_attempt[view.attempt] = view
    pods_by: dict[int, list[PodView]] = {}
    for pod in pods:
        pods_by.setdefault(pod.attempt, []).append(pod)
    return Observed(
        name=meta.get("name", ""),
        spec=job.spec if job is not None else None,
        problems=[str(p) for p in problems],
        status=dict(body.get("status") or {}),
        generation=meta.get("generation"),
        now=now,
        jobs=by_attempt,
        pods=pods_by,
    )


# --------------------------------------------------------------------------- work queue


class WorkQueue:
    """Keys in, one worker per key at a time; a key added while it runs runs once more after."""

    def __init__(self, process: Callable[[Key], Awaitable[None]], workers: int):
        self._process = process
        self._workers = workers
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._pending: set[Key] = set()
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._worker()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def add(self, key: Key) -> None:
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        asyncio.get_running_loop().call_later(max(0.0, delay), self.add, key)

    def __len__(self) -> int:
        return len(self._pending)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            self._running.add(key)
            try:
                await self._process(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # one object's failure must not stop the others; retry it later
                log.exception("reconcile of %s/%s failed; retrying", *key)
                metrics.RECONCILE_ERRORS.inc()
                self.add_after(key, 1.0)
            finally:
                self._running.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)


# --------------------------------------------------------------------------- reconciler


class Reconciler:
    """Owns the caches' view of RARLJobs and the queue; kopf handlers feed it."""

    def __init__(self, settings: Settings, api: Api | None = None):
        self.settings = settings
        self.api = api or Api()
        self.bodies: dict[Key, dict[str, Any]] = {}
        self.jobs_index: Any = None  # kopf indexes: key -> store of JobView / PodView
        self.pods_index: Any = None
        self.executor = concurrent.futures.ThreadPoolExecutor(settings.workers, thread_name_prefix="rarl-api")
        self.queue = WorkQueue(self.reconcile, settings.workers)
        self._resync: asyncio.Task | None = None

    def ensure_started(self, jobs_index: Any, pods_index: Any) -> None:
        """Started from the first handler call: kopf's indexes are complete by then."""
        self.jobs_index, self.pods_index = jobs_index, pods_index
        if self._resync is None:
            self.queue.start()
            self._resync = asyncio.create_task(self._resync_loop())

    async def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            await asyncio.gather(self._resync, return_exceptions=True)
            self._resync = None
        await self.queue.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _resync_loop(self) -> None:
        """Level triggering's safety net: deadlines, TTLs and missed events are caught here."""
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            for key in list(self.bodies):
                self.queue.add(key)

    def upsert(self, body: Mapping[str, Any]) -> Key:
        key = (body["metadata"].get("namespace") or "default", body["metadata"]["name"])
        self.bodies[key] = rj_snapshot(body)
        self.queue.add(key)
        return key

    def forget(self, key: Key) -> None:
        self.bodies.pop(key, None)
        metrics.forget(key)

    def _children(self, key: Key) -> tuple[list[JobView], list[PodView]]:
        jobs = list(self.jobs_index.get(key, [])) if self.jobs_index is not None else []
        pods = list(self.pods_index.get(key, [])) if self.pods_index is not None else []
        return jobs, pods

    async def reconcile(self, key: Key) -> None:
        body = self.bodies.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        started = time.perf_counter()
        jobs, pods = self._children(key)
        obs = observe(body, jobs, pods, dt.datetime.now(dt.timezone.utc))
        plan = decide(obs)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._execute, key, body, obs, plan)
        for etype, reason, message in plan.events:
            try:
                kopf.event(body, type=etype, reason=reason, message=message)
            except LookupError:  # outside kopf's context (unit tests): logging is enough
                pass
            log.info("%s/%s %s: %s", key[0], key[1], reason, message)
        metrics.observe_reconcile(key, plan.status.get("phase"), time.perf_counter() - started)
        if plan.requeue_after is not None:
            self.queue.add_after(key, min(plan.requeue_after + 0.05, self.settings.resync_seconds))

    def _execute(self, key: Key, body: dict[str, Any], obs: Observed, plan: Plan) -> None:
        """Blocking part (worker thread): children first, then the status that records them."""
        ns, name = key
        uid = body["metadata"].get("uid", "")
        if plan.delete_self:
            self.api.delete_rarljob(ns, name)
            return
        for job_name in plan.delete_jobs:
            self.api.delete_job(ns, job_name)
        patch = _status_diff(obs.status, plan.status)
        if plan.ensure_attempt is not None and obs.spec is not None:
            doc = {**body, "metadata": {**body["metadata"], "namespace": ns}}
            doc.pop("status", None)
            job, _ = validate_document({k: doc[k] for k in ("apiVersion", "kind", "metadata", "spec")})
            assert job is not None
            # Write-ahead: record the attempt before its Job exists (see phases module docstring).
            if patch:
                self.api.patch_status(ns, name, patch)
                body["status"] = {**body.get("status", {}), **patch}
                patch = {}
            for child in manifests.all_children(job, uid, plan.ensure_attempt, plan.restarts_for_attempt,
                                                self.settings.defaults, plan.started_with):
                created = self.api.create(child)
                if created and child["kind"] == "Job":
                    metrics.JOBS_CREATED.inc()
                    if plan.restarts_for_attempt > obs.status.get("restarts", 0):
                        metrics.RESTARTS.inc()
        if patch:
            self.api.patch_status(ns, name, patch)
            body["status"] = {**body.get("status", {}), **patch}


def _status_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Only the operator-owned fields that changed (the trainer's fields are never touched)."""
    return {k: v for k, v in new.items() if old.get(k) != v}
