"""Operator benchmark against the API emulator: reconcile latency, burst throughput, memory.

    .venv/bin/python bench/bench_operator.py [--sequential 200] [--burst 500] [--no-append]

1. create -> Job latency: RARLJobs created one at a time; the time from the POST
   returning to the attempt Job existing in the API (p50, p99).
2. burst: N RARLJobs created at once (8 client threads); the time until every one
   has its Job and status phase Pending.
3. the operator process's peak RSS over the whole run (psutil, sampled every 50 ms).
Goals: p50 <= 0.5 s, p99 <= 2 s, 500 jobs <= 60 s, RSS <= 200 MB. Figures are
appended to bench/RESULTS.md (append only).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import importlib.metadata as md
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import kmock
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.kube import KubeEmulator, OperatorProcess  # noqa: E402

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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    with KubeEmulator(workdir) as kube:
        op = OperatorProcess(kube, workdir / "operator.log",
                             env={"RARL_RESYNC_SECONDS": "10", "RARL_METRICS_PORT": "0"}).start()
        sampler = RssSampler(op.proc.pid)
        sampler.start()
        try:
            api = kube.client()

            def create(name: str) -> None:
                api.call_api("/apis/rarl.dev/v1alpha1/namespaces/default/rarljobs", "POST", body=doc(name),
                             header_params={"Content-Type": "application/json"}, auth_settings=["BearerToken"],
                             _preload_content=False)

            latencies = []
            for i in range(args.sequential):
                name = f"seq-{i}"
                create(name)
                t0 = time.perf_counter()
                while exists(kube, JOB_RES, f"{name}-attempt-1") is None:
                    if time.perf_counter() - t0 > 30:
                        raise SystemExit(f"{name}: no Job after 30 s; see {op.log_path}")
                    time.sleep(0.002)
                latencies.append(time.perf_counter() - t0)

            names = [f"burst-{i}" for i in range(args.burst)]
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(create, names))
            created_s = time.perf_counter() - t0
            pending = set(names)
            while pending:
                for name in list(pending):
                    obj = exists(kube, RJ_RES, name)
                    if obj and (obj.get("status") or {}).get("phase") == "Pending" and \
                            exists(kube, JOB_RES, f"{name}-attempt-1") is not None:
                        pending.discard(name)
                if time.perf_counter() - t0 > 600:
                    raise SystemExit(f"{len(pending)} jobs not reconciled after 600 s")
                time.sleep(0.05)
            burst_s = time.perf_counter() - t0
            api.close()
        finally:
            sampler.stop_flag.set()
            sampler.join()
            op.stop()

    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    rss_mb = sampler.peak / 2**20
    ok = lambda c: "ok" if c else "MISSED"  # noqa: E731
    lines = [
        f"create->Job latency over {args.sequential} jobs: p50 {p50 * 1000:.0f} ms ({ok(p50 <= 0.5)}, goal 500 ms), "
        f"p99 {p99 * 1000:.0f} ms ({ok(p99 <= 2)}, goal 2000 ms), max {max(latencies) * 1000:.0f} ms",
        f"{args.burst} RARLJobs at once: all reconciled (Job + phase Pending) in {burst_s:.1f} s "
        f"({ok(burst_s <= 60)}, goal 60 s; the POSTs alone took {created_s:.1f} s)",
        f"operator peak RSS: {rss_mb:.0f} MB ({ok(rss_mb <= 200)}, goal 200 MB)",
    ]
    print("\n".join(lines))
    if not args.no_append:
        versions = ", ".join(f"{p} {md.version(p)}" for p in ("kopf", "kmock", "kubernetes"))
        header = (f"\n## bench_operator.py, {dt.date.today().isoformat()}\n\n"
                  f"Machine: {os.cpu_count()}-core {platform.machine()} VM, load {os.getloadavg()[0]:.1f}, "
                  f"Python {platform.python_version()}; {versions}. API: kmock emulator in the bench process; "
                  f"operator: `kopf run -m rarl_operator` subprocess, 8 workers.\n\n")
        with open(REPO / "bench" / "RESULTS.md", "a") as fh:
            fh.write(header + "".join(f"- {line}\n" for line in lines))


if __name__ == "__main__":
    main()
