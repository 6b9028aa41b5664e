"""Shared pieces of the bench/ scripts: flags, machine/versions header, min/median/max, RESULTS.md.

Every script takes the same two flags (``add_common_args``): ``--no-record`` (do not append to
bench/RESULTS.md; appending is the default) and ``--quick`` (a reduced size, for a smoke run).
``record`` appends one section (title, UTC stamp, machine + versions line, body) to RESULTS.md,
which is append only. ``goal`` prints one goal line and, when ``bench/run_all.py`` runs the script
(environment variable ``RARL_BENCH_GOALS`` names a JSON-lines file), adds it to that file so the
runner can print one summary table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
GOALS_ENV = "RARL_BENCH_GOALS"


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--no-record", action="store_true", help="do not append the figures to bench/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="reduced size (smoke run; figures are noisier)")
    return parser


def versions(*packages: str) -> str:
    """``Python 3.11.7, torch 2.x, ...`` (packages that are not installed are left out)."""
    parts = [f"Python {platform.python_version()}"]
    for name in packages:
        try:
            parts.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(parts)


def machine() -> str:
    """CPU architecture, OS, cores, GPU (if torch is already imported and sees one), 1-min load."""
    gpu = "no GPU"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gpu = f"GPU {torch.cuda.get_device_name(0)}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.machine()}, {platform.platform()}, {os.cpu_count()} cores, {gpu}, load {load:.1f}"


def git_rev() -> str:
    """Short commit of the repo, with a note when the working tree has uncommitted changes."""
    import subprocess

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev} + uncommitted changes" if dirty else rev


def header(*packages: str) -> str:
    return f"Machine: {machine()}; {versions(*packages)}; repo {git_rev()}."


def stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def mmm(values: Iterable[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    vals = list(values)
    return min(vals), statistics.median(vals), max(vals)


def fmt_mmm(values: Iterable[float], scale: float = 1.0, fmt: str = ".3f", sep: str = " / ") -> str:
    """``min / median / max`` of values * scale."""
    return sep.join(format(v * scale, fmt) for v in mmm(values))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def record(title: str, body: str, packages: Sequence[str] = (), *, enabled: bool = True) -> None:
    """Append ``## title (stamp)`` + machine line + body to bench/RESULTS.md (when enabled)."""
    if not enabled:
        return
    text = f"\n## {title} ({stamp()})\n\n{header(*packages)}\n\n{body.strip()}\n"
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(text)
    print(f"appended to {RESULTS}")


def goal(bench: str, name: str, value: float, limit: float, unit: str = "", *, higher_is_better: bool = False,
         fmt: str = ".3f") -> bool:
    """Print one goal check and hand it to run_all.py (if it runs us); returns whether it is met."""
    ok = value >= limit if higher_is_better else value <= limit
    op = ">=" if higher_is_better else "<="
    row = {"bench": bench, "goal": name, "value": f"{value:{fmt}}{unit}", "target": f"{op} {limit:g}{unit}",
           "status": "PASS" if ok else "FAIL"}
    print(f"goal {name}: {row['value']} ({row['target']}) {row['status']}")
    path = os.environ.get(GOALS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
    return ok


def info(bench: str, name: str, value: str) -> None:
    """A figure without a goal (growth, throughput): shown in run_all's table as INFO."""
    path = os.environ.get(GOALS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"bench": bench, "goal": name, "value": value, "target": "-", "status": "INFO"}) + "\n")
