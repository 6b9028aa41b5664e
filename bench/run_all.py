"""Run every CPU benchmark in sequence and print one table of every goal (PASS / FAIL / value).

    .venv/bin/python bench/run_all.py [--quick] [--no-record] [--only core,startup] [--strict]

Order: core, trainer (tiny VLM; ``--only trainer-lm`` adds the tiny LM), storage (256 MiB), operator,
startup, growth, rollout (merged-LoRA rollouts vs vanilla TRL, tiny LM on CPU); each
script runs alone as a subprocess (``python bench/<script>.py``) with the shared flags passed on,
and hands its goals back through the JSON-lines file named by ``RARL_BENCH_GOALS``. Each script
appends its own section to bench/RESULTS.md; the summary table (with every script's wall time
and the total) is appended too, unless ``--no-record``. Budget: 15 minutes on a 2-core CPU machine.
Exit status: 1 if a script failed (crashed), or with ``--strict`` if a goal was missed; else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BENCH, GOALS_ENV, REPO, record

BENCHES: list[tuple[str, list[str]]] = [
    ("core", ["bench_core.py"]),
    ("trainer", ["bench_trainer.py", "--model", "builtin:tiny-qwen2.5-vl", "--rounds", "4", "--steps", "10"]),
    ("trainer-lm", ["bench_trainer.py", "--model", "builtin:tiny-lm"]),  # only with --only (time budget)
    ("storage", ["bench_storage.py", "--size-mb", "256"]),
    ("operator", ["bench_operator.py"]),
    ("startup", ["bench_startup.py"]),
    ("growth", ["bench_growth.py"]),
    ("rollout", ["bench_rollout.py", "--device", "cpu", "--model", "tiny", "--rounds", "3", "--steps", "6"]),
]
DEFAULT = ["core", "trainer", "storage", "operator", "startup", "growth", "rollout"]
BUDGET_S = 15 * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every script (smoke run)")
    ap.add_argument("--no-record", action="store_true", help="pass --no-record; no summary in RESULTS.md")
    ap.add_argument("--only", default="", help="comma-separated names: " + ",".join(n for n, _ in BENCHES))
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = ap.parse_args()
    wanted = [n for n in args.only.split(",") if n] or DEFAULT
    unknown = set(wanted) - {n for n, _ in BENCHES}
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    flags = (["--quick"] if args.quick else []) + (["--no-record"] if args.no_record else [])

    goals_file = Path(tempfile.mkstemp(prefix="rarl-bench-goals-", suffix=".jsonl")[1])
    env = {**os.environ, GOALS_ENV: str(goals_file), "PYTHONUNBUFFERED": "1"}
    walls: dict[str, float] = {}
    failed: list[str] = []
    t_all = time.perf_counter()
    for name, cmd in BENCHES:
        if name not in wanted:
            continue
        print(f"\n===== {name}: {' '.join(cmd + flags)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(BENCH / cmd[0]), *cmd[1:], *flags], cwd=REPO, env=env)
        walls[name] = time.perf_counter() - t0
        print(f"===== {name}: exit {rc}, {walls[name]:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    total = time.perf_counter() - t_all

    rows = [json.loads(line) for line in goals_file.read_text().splitlines() if line.strip()]
    goals_file.unlink()
    table = ["| benchmark | goal / figure | value | target | status |", "|---|---|---|---|---|"]
    table += [f"| {r['bench']} | {r['goal']} | {r['value']} | {r['target']} | {r['status']} |" for r in rows]
    table += [f"| {name} | script crashed | - | exit 0 | FAIL |" for name in failed]
    walls_line = ", ".join(f"{n} {s:.0f} s" for n, s in walls.items())
    in_budget = total <= BUDGET_S
    summary = (f"Wall time {total:.0f} s ({total / 60:.1f} min; budget {BUDGET_S // 60} min: "
               f"{'PASS' if in_budget else 'FAIL'}){' with --quick' if args.quick else ''}. Per script: {walls_line}.")
    text = "\n".join(table) + "\n\n" + summary
    print("\n===== summary\n" + text, flush=True)
    record("run_all.py: summary of every goal", text, enabled=not args.no_record)
    missed = [r for r in rows if r["status"] == "FAIL"]
    if failed or (args.strict and (missed or not in_budget)):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
