"""kopf wiring: one small handler per concern, no finalizers, no kopf state on our objects.

Only watch-event handlers and indexes are used (no on.create/update, timers or
daemons): those would store kopf's progress on the object or add a finalizer
that wedges deletion while the operator is down. Every event just enqueues the
RARLJob's key; the reconciler recomputes everything from the API's state.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from rarl.api.types import API_GROUP, API_VERSION, PLURAL
from rarl.api.vocabulary import LABEL_JOB
from rarl_operator import metrics
from rarl_operator.reconciler import Reconciler, job_view, pod_view
from rarl_operator.settings import SETTINGS

log = logging.getLogger("rarl_operator")
RECONCILER = Reconciler(SETTINGS)
_state: dict[str, Any] = {}
CHILD = {LABEL_JOB: kopf.PRESENT}


def _watched(namespace: str | None, **_: Any) -> bool:
    """RARL_WATCH_NAMESPACES also filters when run as `kopf run -A` (the chart passes --namespace too)."""
    return not SETTINGS.watch_namespaces or namespace in SETTINGS.watch_namespaces


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Quiet posting, watch timeouts, the worker count and the metrics endpoint.

    kopf adds its finalizer only for handlers that need one (on.delete, daemons, timers); event
    handlers and indexes do not, so none is set or added here.
    """
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = SETTINGS.workers
    if SETTINGS.metrics_port > 0:
        _state["metrics"] = await metrics.serve(SETTINGS.metrics_port)


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    await RECONCILER.stop()
    runner = _state.pop("metrics", None)
    if runner is not None:
        await runner.cleanup()


@kopf.on.probe(id="queue")
async def queue_depth(**_: Any) -> int:
    """Liveness (kopf --liveness): also shows how many RARLJobs wait for a reconcile."""
    return len(RECONCILER.queue)


@kopf.index("batch", "v1", "jobs", labels=CHILD, when=_watched)
async def attempt_jobs(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict:
    """Cache of attempt Jobs by owning RARLJob."""
    return {(namespace, labels[LABEL_JOB]): job_view(body)}


@kopf.index("", "v1", "pods", labels=CHILD, when=_watched)
async def trainer_pods(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict:
    """Cache of trainer pods by owning RARLJob."""
    return {(namespace, labels[LABEL_JOB]): pod_view(body)}


@kopf.on.event(API_GROUP, API_VERSION, PLURAL, when=_watched)
async def rarljob_event(event: kopf.RawEvent, body: kopf.Body, attempt_jobs: kopf.Index,
                  trainer_pods: kopf.Index, **_: Any) -> None:
    """Any change of a RARLJob (spec, status, deletion) triggers its reconcile."""
    RECONCILER.ensure_started(attempt_jobs, trainer_pods)
    if event.get("type") == "DELETED":
        RECONCILER.forget((body.metadata.namespace or "default", body.metadata.name))
    else:
        RECONCILER.upsert(body)


@kopf.on.event("batch", "v1", "jobs", labels=CHILD, when=_watched)
async def job_event(namespace: str, labels: kopf.Labels, **_: Any) -> None:
    """A Job changed: its RARLJob's phase may change."""
    _poke(namespace, labels[LABEL_JOB])


@kopf.on.event("", "v1", "pods", labels=CHILD, when=_watched)
async def pod_event(namespace: str, labels: kopf.Labels, **_: Any) -> None:
    """A pod changed (scheduled, running, exited, disrupted)."""
    _poke(namespace, labels[LABEL_JOB])


def _poke(namespace: str, name: str) -> None:
    key = (namespace, name)
    if key in RECONCILER.bodies:
        RECONCILER.queue.add(key)
