"""CLI and SDK start-up time, hyperfine-style: each command run as a fresh subprocess, repeated.

    .venv/bin/python bench/bench_startup.py [--runs 10] [--quick] [--no-record]

Commands (wall time from spawn to exit, min/median/max over ``--runs`` after 2 warm-up runs,
the commands interleaved run by run so machine noise hits all alike):
- ``rarlctl --help`` (goal: median < 0.5 s)
- ``python -c "import rarl"`` (goal: median < 0.3 s)
- ``rarlctl validate -f examples/quickstart.yaml`` (no goal; parses + validates a RARLJob)
- ``python -c pass`` (the interpreter alone, the floor under the other three)
The figures are appended to bench/RESULTS.md unless ``--no-record``; ``--quick``: 4 runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, add_common_args, fmt_mmm, goal, info, mmm, record

BIN = Path(sys.executable).parent
COMMANDS: list[tuple[str, list[str], float | None]] = [
    ("rarlctl --help", [str(BIN / "rarlctl"), "--help"], 0.5),
    ('python -c "import rarl"', [sys.executable, "-c", "import rarl"], 0.3),
    ("rarlctl validate -f examples/quickstart.yaml",
     [str(BIN / "rarlctl"), "validate", "-f", "examples/quickstart.yaml"], None),
    ("python -c pass (floor)", [sys.executable, "-c", "pass"], None),
]


def run_once(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None, help="timed runs per command (default 10, --quick 4)")
    ap.add_argument("--warmup", type=int, default=2)
    add_common_args(ap)
    args = ap.parse_args()
    runs = args.runs or (4 if args.quick else 10)
    times: dict[str, list[float]] = {name: [] for name, _, _ in COMMANDS}
    for _ in range(args.warmup):
        for _, cmd, _ in COMMANDS:
            run_once(cmd)
    for r in range(runs):
        order = COMMANDS if r % 2 == 0 else COMMANDS[::-1]
        for name, cmd, _ in order:
            times[name].append(run_once(cmd))
    rows = ["| command | min (s) | median (s) | max (s) | goal (median) |", "|---|---|---|---|---|"]
    for name, _, limit in COMMANDS:
        lo, med, hi = mmm(times[name])
        rows.append(f"| `{name}` | {lo:.3f} | {med:.3f} | {hi:.3f} | {f'< {limit} s' if limit else '-'} |")
    table = "\n".join(rows)
    print(table)
    for name, _, limit in COMMANDS:
        if limit is not None:
            goal("startup", f"{name} (median)", mmm(times[name])[1], limit, " s")
        else:
            info("startup", f"{name} (min / median / max)", fmt_mmm(times[name], fmt=".3f") + " s")
    record("bench_startup.py: CLI and SDK start-up (fresh subprocess each run)",
           f"{runs} timed runs per command after {args.warmup} warm-up runs, commands interleaved (order "
           f"reversed every other run); wall time from spawn to exit; bytecode already compiled.\n\n{table}",
           ["rarl", "typer", "pydantic"], enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
