"""Level-triggered reconciliation: a de-duplicating work queue of RARLJob keys.

Any watch event (the RARLJob, one of its Jobs or pods) and a periodic resync
enqueue the RARLJob's key; a fixed pool of workers takes keys one at a time per
key, observes the current state (kopf's in-memory caches of Jobs and pods),
asks ``rarl.lifecycle.decide`` for a plan and carries it out with idempotent API calls.
Nothing is remembered between two reconciles of a key except what is in the API
(and which ChildNotOwned warning was posted last: one Event per blocker, not one per retry).
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
from rarl.api.policy import PodPolicy, policy_problems
from rarl.api.validation import cluster_problems, validate_document
from rarl.api.vocabulary import (
    ANNOTATION_OPERATOR_RECORD,
    ANNOTATION_RESTARTS,
    ANNOTATION_TRAINING_SETTINGS,
    LABEL_ATTEMPT,
    OPERATOR_STATUS_FIELDS,
    PHASES,
    REASON_CHILD_NOT_OWNED,
)
from rarl.lifecycle import JobView, Observed, Plan, PodView, child_not_owned, children_created, decide
from rarl_operator import metrics
from rarl_operator.api import Api, ChildNotOwned
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


def _owners(meta: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(ref["uid"] for ref in meta.get("ownerReferences") or [] if ref.get("uid"))


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
        uid=meta.get("uid", ""),
        owners=_owners(meta),
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
        owners=_owners(meta),
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


def read_record(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The operator's record of its status fields (ANNOTATION_OPERATOR_RECORD); None: none for this object.

    A record of another uid (an annotation copied with a manifest) is no record; an unreadable one is
    ignored with a warning, and the next write replaces it.
    """
    meta = body.get("metadata", {})
    raw = (meta.get("annotations") or {}).get(ANNOTATION_OPERATOR_RECORD)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not _valid_record(record):
        log.warning("%s/%s: ignoring the unreadable %s annotation %r", meta.get("namespace"), meta.get("name"),
                    ANNOTATION_OPERATOR_RECORD, raw[:200])
        return None
    return record if record.get("uid") == meta.get("uid") else None


def _valid_record(record: Mapping[str, Any]) -> bool:
    counts = all(isinstance(record.get(k, 0), int) and record.get(k, 0) >= 0 for k in ("attempt", "restarts"))
    times = all(isinstance(record.get(k, ""), str) for k in ("startTime", "completionTime"))
    conditions = record.get("conditions", [])
    listed = isinstance(conditions, list) and all(isinstance(c, dict) for c in conditions)
    return (counts and times and listed and record.get("phase", "Pending") in PHASES
            and isinstance(record.get("uid"), str))


def make_record(uid: str, status: Mapping[str, Any]) -> dict[str, Any]:
    return {"uid": uid, **{k: status[k] for k in OPERATOR_STATUS_FIELDS if status.get(k) is not None}}


def trusted_status(body: Mapping[str, Any]) -> dict[str, Any]:
    """The status with the operator's fields taken from its record: the trainer may patch status, not the record.

    Without a record (a new job, or one an older operator started) the status is all there is; the
    operator writes the record before it creates any Job, so no trainer runs before the record exists.
    """
    status = dict(body.get("status") or {})
    record = read_record(body)
    if record is None:
        return status
    for key in OPERATOR_STATUS_FIELDS:
        if key in record:
            status[key] = record[key]
        else:
            status.pop(key, None)
    return status


def observe(body: Mapping[str, Any], jobs: Iterable[JobView], pods: Iterable[PodView], now: dt.datetime,
            policy: PodPolicy = PodPolicy()) -> Observed:
    meta = body.get("metadata", {})
    doc = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
           "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                        "labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}},
           "spec": body.get("spec")}
    job, problems = validate_document(doc)
    status = trusted_status(body)
    admitted = bool(status.get("phase"))  # jobs an older operator started are left alone
    if job is not None and not admitted and (problems := cluster_problems(job)):  # checkpoints dying with the pod
        job = None
    if job is not None and (problems := policy_problems(job, policy)):  # every time: a spec edit is checked too
        job = None
    # Ours only: the label is a hint anyone can set; the Job must be owned by this RARLJob, the pod by its Job.
    uid = meta.get("uid")
    owned = [view for view in jobs if uid and uid in view.owners]
    job_uids = {view.uid for view in owned if view.uid}
    by_attempt: dict[int, JobView] = {}
    for view in owned:
        if view.attempt > 0:
            by_attempt[view.attempt] = view
    pods_by: dict[int, list[PodView]] = {}
    for pod in pods:
        if job_uids.intersection(pod.owners):
            pods_by.setdefault(pod.attempt, []).append(pod)
    return Observed(
        name=meta.get("name", ""),
        spec=job.spec if job is not None else None,
        problems=[str(p) for p in problems],
        status=status,
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
        self._blocked: dict[Key, str] = {}  # the ChildNotOwned message last posted as an Event, per key

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
        self._blocked.pop(key, None)
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
        obs = observe(body, jobs, pods, dt.datetime.now(dt.timezone.utc), self.settings.policy)
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
        if plan.ensure_attempt is not None and obs.spec is not None:
            doc = {**body, "metadata": {**body["metadata"], "namespace": ns}}
            doc.pop("status", None)
            job, _ = validate_document({k: doc[k] for k in ("apiVersion", "kind", "metadata", "spec")})
            assert job is not None
            # Write-ahead: record the attempt before its Job exists (see the ``rarl.lifecycle`` docstring).
            self._write_status(key, body, plan)
            now = dt.datetime.now(dt.timezone.utc)
            try:
                for child in manifests.all_children(job, uid, plan.ensure_attempt, plan.restarts_for_attempt,
                                                    self.settings.defaults, plan.started_with):
                    created = self.api.create(child)
                    if created and child["kind"] == "Job":
                        metrics.JOBS_CREATED.inc()
                        if plan.restarts_for_attempt > obs.status.get("restarts", 0):
                            metrics.RESTARTS.inc()
            except ChildNotOwned as blocked:  # the rest (the Job last) is not created: it would use the blocker
                message = child_not_owned(plan, plan.ensure_attempt, str(blocked), now)
                if self._blocked.get(key) != message:  # not from the snapshot: a stale one would post it again
                    self._blocked[key] = message
                    plan.events.append(("Warning", REASON_CHILD_NOT_OWNED, message))
            else:
                self._blocked.pop(key, None)
                children_created(plan, plan.ensure_attempt, now)
        self._write_status(key, body, plan)

    def _write_status(self, key: Key, body: dict[str, Any], plan: Plan) -> None:
        """The record (when the operator's fields changed) and the status fields that differ, into the snapshot too.

        The diff is against the status as stored, not the trusted one: a field someone else changed is
        rewritten from the record.
        """
        ns, name = key
        stored = body.get("status") or {}
        recorded = read_record(body)
        patch = _status_diff(stored, plan.status)
        if recorded is not None and (restored := {k: stored[k] for k in OPERATOR_STATUS_FIELDS
                                                  if k in patch and k in stored and stored[k] != recorded.get(k)}):
            log.info("%s/%s: status %s differed from the operator's record; rewritten", ns, name,
                     ", ".join(f"{k}={v!r}" for k, v in sorted(restored.items())))
        record = make_record(body["metadata"].get("uid", ""), plan.status)
        raw = json.dumps(record, sort_keys=True) if record != recorded else None
        if patch or raw is not None:
            self.api.patch_status(ns, name, patch, raw)
        if raw is not None:
            meta = body["metadata"]
            meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_OPERATOR_RECORD: raw}
        if patch:
            body["status"] = {k: v for k, v in {**stored, **patch}.items() if v is not None}


def _status_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Only the operator-owned fields that changed (the trainer's fields are never touched).

    A recorded field the plan leaves unset but the status has (say a completionTime written by the
    trainer) is removed (null in a merge patch).
    """
    patch = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in OPERATOR_STATUS_FIELDS if k not in new and k in old})
    return patch
