"""Checkpoint upload/download throughput: rarl.storage versus plain boto3, on a real SeaweedFS.

Not a test. Run: ``.venv/bin/python bench/bench_storage.py [--size-mb 512] [--repeats 3] [--quick] [--no-record]``.

The folder looks like a checkpoint: one large weights file (50 %), two optimizer
shards (20 % each), eight medium files and a handful of small JSON files. Each
repeat runs the four measurements interleaved (order alternating), so drift on
a shared machine hits both sides alike. The baseline is what a trainer would
write without this layer: ``client.upload_file``/``download_file`` per file
with boto3's default TransferConfig. Goal: rarl.storage >= 0.8x the baseline.
A results block is appended to bench/RESULTS.md (``--no-record`` to skip); ``--quick``: 64 MiB, 2 repeats.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import add_common_args, goal, record

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support

MiB = 1024 * 1024


def make_checkpoint(root: Path, size_mb: int) -> int:
    """Write the folder; returns its total bytes."""
    total = size_mb * MiB
    sizes = {"model/weights.safetensors": total // 2, "optim/shard-0.pt": total // 5, "optim/shard-1.pt": total // 5}
    rest = total - sum(sizes.values())
    for i in range(8):
        sizes[f"model/extra-{i}.bin"] = rest // 8 - 4096
    for i in range(8):
        sizes[f"meta/config-{i}.json"] = 4096
    block = os.urandom(4 * MiB)
    for rel, size in sizes.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            left = size
            while left > 0:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
    return sum(sizes.values())


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=None, help="total checkpoint size (default 512, --quick 64)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3, --quick 2)")
    add_common_args(ap)
    args = ap.parse_args()
    if args.size_mb is None:
        args.size_mb = 64 if args.quick else 512
    if args.repeats is None:
        args.repeats = 2 if args.quick else 3

    import boto3
    from botocore.config import Config

    from rarl.api.types import StorageSpec
    from rarl.storage import CheckpointStore
    from tests.support.seaweedfs import seaweedfs

    work = Path(tempfile.mkdtemp(prefix="rarl-bench-"))
    results: dict[str, list[float]] = {"rarl up": [], "boto3 up": [], "rarl down": [], "boto3 down": []}
    try:
        src = work / "ckpt"
        total = make_checkpoint(src, args.size_mb)
        files = sorted(p for p in src.rglob("*") if p.is_file())
        with seaweedfs(work / "weed") as server:
            os.environ.update(server.env())
            bucket = server.create_bucket("bench")
            spec = StorageSpec(endpoint=server.endpoint, path_style=True, region=server.region)
            ckpts = CheckpointStore(f"s3://{bucket}/rarl", spec)
            raw = boto3.client(
                "s3", endpoint_url=server.endpoint, region_name=server.region,
                config=Config(s3={"addressing_style": "path"}),
            )

            def raw_up(prefix: str) -> None:
                for p in files:
                    raw.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(src).as_posix()}")

            def raw_down(prefix: str, dest: Path) -> None:
                for p in files:
                    out = dest / p.relative_to(src)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    raw.download_file(bucket, f"{prefix}/{p.relative_to(src).as_posix()}", str(out))

            # warm-up: first writes to a bucket allocate volumes on the server
            ckpts.save(src, 0)
            raw_up("raw/warm")
            for r in range(args.repeats):
                step = r + 1
                order = ["rarl", "boto3"] if r % 2 == 0 else ["boto3", "rarl"]
                for who in order:
                    if who == "rarl":
                        results["rarl up"].append(timed(lambda s=step: ckpts.save(src, s)))
                    else:
                        results["boto3 up"].append(timed(lambda s=step: raw_up(f"raw/{s}")))
                for who in order:
                    dest = work / f"down-{who}-{step}"
                    if who == "rarl":
                        info = ckpts.latest()
                        assert info is not None and info.step == step
                        results["rarl down"].append(timed(lambda i=info, d=dest: ckpts.restore(i, d)))
                    else:
                        results["boto3 down"].append(timed(lambda s=step, d=dest: raw_down(f"raw/{s}", d)))
                    shutil.rmtree(dest)
                ckpts.prune(1)
                print(f"repeat {step}/{args.repeats} done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mb = total / MiB
    rows = []
    for name, times in results.items():
        rows.append((name, min(times), statistics.median(times), max(times), mb / statistics.median(times)))
    med = {name: statistics.median(t) for name, t in results.items()}
    ratio_up = med["boto3 up"] / med["rarl up"]
    ratio_down = med["boto3 down"] / med["rarl down"]

    body = "\n".join([
        f"SeaweedFS `weed mini` on 127.0.0.1 (same machine, local disk). Folder: {mb:.0f} MiB in {len(files)} "
        f"files (one 50 % file, two 20 % shards, 8 medium, 8 small); {args.repeats} interleaved repeats. "
        "rarl.storage = CheckpointStore.save/restore (sha256 of every file, manifest, default StorageSpec: "
        "64 MiB parts, 8 threads, one TransferManager for all files); boto3 = upload_file/download_file per "
        "file, default TransferConfig. rarl times include hashing and (on restore) verification.",
        "",
        "| operation | min (s) | median (s) | max (s) | MiB/s (median) |",
        "|---|---|---|---|---|",
        *[f"| {n} | {a:.2f} | {m:.2f} | {b:.2f} | {t:.0f} |" for n, a, m, b, t in rows],
        "",
        f"Ratio rarl/boto3 throughput (median): upload {ratio_up:.2f}x, download {ratio_down:.2f}x (goal >= 0.8x).",
    ])
    print(body)
    goal("storage", f"upload throughput rarl/boto3 ({mb:.0f} MiB)", ratio_up, 0.8, "x", higher_is_better=True,
         fmt=".2f")
    goal("storage", f"download throughput rarl/boto3 ({mb:.0f} MiB)", ratio_down, 0.8, "x", higher_is_better=True,
         fmt=".2f")
    record("bench_storage.py: checkpoint upload/download vs plain boto3", body, ["boto3", "botocore"],
           enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
