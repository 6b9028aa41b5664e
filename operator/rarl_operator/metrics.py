"""Prometheus metrics in the text exposition format, served by aiohttp on kopf's loop.

Hand-written (prometheus_client is not a dependency): a gauge of RARLJobs by
phase, counters of Jobs created, restarts and reconcile errors, and a histogram
of reconcile latency.
"""

from __future__ import annotations

import threading
from collections import Counter as _Counter

from aiohttp import web

from rarl.api.vocabulary import PHASES

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Counter:
    def __init__(self, name: str, help_: str):
        self.name, self.help, self.value = name, help_, 0
        self._lock = threading.Lock()

    def inc(self, n: int = 1) -> None:
        with self._lock:
            self.value += n

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter", f"{self.name} {self.value}"]


class Histogram:
    def __init__(self, name: str, help_: str, buckets: tuple[float, ...] = BUCKETS):
        self.name, self.help, self.buckets = name, help_, buckets
        self.counts = [0] * len(buckets)
        self.total, self.count = 0.0, 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.total += value
            self.count += 1
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self.counts[i] += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        lines += [f'{self.name}_bucket{{le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts, strict=True)]
        lines += [f'{self.name}_bucket{{le="+Inf"}} {self.count}',
                  f"{self.name}_sum {self.total:.6f}", f"{self.name}_count {self.count}"]
        return lines


JOBS_CREATED = Counter("rarl_operator_jobs_created_total", "Attempt Jobs created by the operator.")
RESTARTS = Counter("rarl_operator_restarts_total", "Attempts started after a counted failure.")
RECONCILE_ERRORS = Counter("rarl_operator_reconcile_errors_total", "Reconciles that raised and were retried.")
RECONCILE_SECONDS = Histogram("rarl_operator_reconcile_duration_seconds", "Time of one reconcile.")
_phases: dict[tuple[str, str], str] = {}


def observe_reconcile(key: tuple[str, str], phase: str | None, seconds: float) -> None:
    RECONCILE_SECONDS.observe(seconds)
    if phase:
        _phases[key] = phase


def forget(key: tuple[str, str]) -> None:
    _phases.pop(key, None)


def render() -> str:
    by_phase = _Counter(_phases.values())
    lines = ["# HELP rarl_operator_jobs RARLJobs by phase.", "# TYPE rarl_operator_jobs gauge"]
    lines += [f'rarl_operator_jobs{{phase="{p}"}} {by_phase.get(p, 0)}' for p in PHASES]
    for metric in (JOBS_CREATED, RESTARTS, RECONCILE_ERRORS, RECONCILE_SECONDS):
        lines += metric.render()
    return "\n".join(lines) + "\n"


async def _handle(_: web.Request) -> web.Response:
    return web.Response(text=render(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def serve(port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start the /metrics endpoint; the caller keeps the runner to clean it up."""
    app = web.Application()
    app.router.add_get("/metrics", _handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
