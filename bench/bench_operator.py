"""Operator benchmark against the API emulator: reconcile latency, burst throughput, memory.

    .venv/bin/python bench/bench_operator.py [--sequential 200] [--burst 500] [--quick] [--no-record]

1. create -> Job latency: RARLJobs created one at a time; the time from the POST
   returning to the attempt Job existing in the API (p50, p99).
2. burst: N RARLJobs created at once (8 client threads); the time until every one
   has its Job and status phase Pending.
3. the operator process's peak RSS over the whole run (psutil, sampled every 50 ms).
Goals: p50 <= 0.5 s, p99 <= 2 s, 500 jobs <= 60 s, RSS <= 200 MB. Figures are
appended to bench/RESULTS.md (append only) unless ``--no-record``; ``--quick``: 50 + 100 jobs.
``OperatorBench`` (emulator + operator subprocess + RSS sampler) is reused by bench_growth.py.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import kmock
import psutil
from _common import REPO, add_common_args, goal, percentile, record

sys.path.insert(0, str(REPO))

from tests.support.emulator import KubeEmulator
from tests.support.operator_runner import OperatorProcess

RJ_RES = kmock.resource("rarl.dev/v1alpha1/rarljobs")
JOB_RES = kmock.resource("batch/v1/jobs")


def doc(name: str) -> dict:
    return {"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": name, "namespace": "default"},
            "spec": {"model": {"base": "builtin:tiny-qwen2.5-vl"}, "dataset": {"format": "synthetic"},
                     "checkpoint": {"uri": f"s3://bench-bucket/{name}/ckpt"},
                     "output": {"uri": f"s3://bench-bucket/{name}/model"}}}


def exists(kube: KubeEmulator, res: kmock.resource, name: str) -> dict | None:
    objects = kube.emulator.objects
    try:
        obj = objects[res, "default", name]
    except KeyError:
        return None
    return None if obj.deleted else obj.raw


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)


class OperatorBench:
    """The kmock API emulator, ``kopf run -m rarl_operator.handlers`` against it, and an RSS sampler on the operator."""

    def __init__(self, workdir: Path | None = None):
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-operator-"))

    def __enter__(self) -> OperatorBench:
        self.kube = KubeEmulator(self.workdir).__enter__()
        self.op = OperatorProcess(self.kube, self.workdir / "operator.log",
                                  env={"RARL_RESYNC_SECONDS": "10", "RARL_METRICS_PORT": "0"}).start()
        self.sampler = RssSampler(self.op.proc.pid)
        self.sampler.start()
        self.api = self.kube.client()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.api.close()
        finally:
            self.sampler.stop_flag.set()
            self.sampler.join()
            self.op.stop()
            self.kube.__exit__(*exc)

    def create(self, name: str) -> None:
        self.api.call_api("/apis/rarl.dev/v1alpha1/namespaces/default/rarljobs", "POST", body=doc(name),
                          header_params={"Content-Type": "application/json"}, auth_settings=["BearerToken"],
                          _preload_content=False)

    def latency(self, name: str, timeout: float = 30) -> float:
        """Create one RARLJob; seconds from the POST returning to its attempt Job existing."""
        self.create(name)
        t0 = time.perf_counter()
        while exists(self.kube, JOB_RES, f"{name}-attempt-1") is None:
            if time.perf_counter() - t0 > timeout:
                raise SystemExit(f"{name}: no Job after {timeout} s; see {self.op.log_path}")
            time.sleep(0.002)
        return time.perf_counter() - t0

    def burst(self, names: list[str], timeout: float = 600) -> tuple[float, float]:
        """Create all at once (8 threads); (seconds for the POSTs, seconds until all have Job + Pending)."""
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(self.create, names))
        created_s = time.perf_counter() - t0
        pending = set(names)
        while pending:
            for name in list(pending):
                obj = exists(self.kube, RJ_RES, name)
                if obj and (obj.get("status") or {}).get("phase") == "Pending" and \
                        exists(self.kube, JOB_RES, f"{name}-attempt-1") is not None:
                    pending.discard(name)
            if time.perf_counter() - t0 > timeout:
                raise SystemExit(f"{len(pending)} jobs not reconciled after {timeout} s")
            time.sleep(0.05)
        return created_s, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=None, help="default 200 (--quick 50)")
    parser.add_argument("--burst", type=int, default=None, help="default 500 (--quick 100)")
    add_common_args(parser)
    args = parser.parse_args()
    if args.sequential is None:
        args.sequential = 50 if args.quick else 200
    if args.burst is None:
        args.burst = 100 if args.quick else 500

    with OperatorBench() as ob:
        latencies = [ob.latency(f"seq-{i}") for i in range(args.sequential)]
        created_s, burst_s = ob.burst([f"burst-{i}" for i in range(args.burst)])
    sampler = ob.sampler

    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    rss_mb = sampler.peak / 2**20
    ok = lambda c: "ok" if c else "MISSED"  # noqa: E731
    lines = [
        f"create->Job latency over {args.sequential} jobs: min {min(latencies) * 1000:.0f} ms, "
        f"p50 {p50 * 1000:.0f} ms ({ok(p50 <= 0.5)}, goal 500 ms), "
        f"p99 {p99 * 1000:.0f} ms ({ok(p99 <= 2)}, goal 2000 ms), max {max(latencies) * 1000:.0f} ms",
        f"{args.burst} RARLJobs at once: all reconciled (Job + phase Pending) in {burst_s:.1f} s "
        f"({ok(burst_s <= 60)}, goal 60 s; the POSTs alone took {created_s:.1f} s)",
        f"operator peak RSS: {rss_mb:.0f} MB ({ok(rss_mb <= 200)}, goal 200 MB)",
    ]
    print("\n".join(lines))
    goal("operator", "create->Job p50", p50 * 1000, 500, " ms", fmt=".0f")
    goal("operator", "create->Job p99", p99 * 1000, 2000, " ms", fmt=".0f")
    goal("operator", f"{args.burst} jobs at once reconciled", burst_s, 60, " s", fmt=".1f")
    goal("operator", "operator peak RSS", rss_mb, 200, " MB", fmt=".0f")
    record("bench_operator.py: operator on the kmock emulator",
           "API: kmock emulator in the bench process; operator: `kopf run -m rarl_operator.handlers` subprocess, "
           "8 workers.\n\n" + "".join(f"- {line}\n" for line in lines),
           ["kopf", "kmock", "kubernetes"], enabled=not args.no_record)


if __name__ == "__main__":
    main()
