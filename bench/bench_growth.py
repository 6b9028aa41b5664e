"""Growth: how the RARL trainer's step time grows with list size and group size, and how the
operator's create->Job latency grows with the number of RARLJobs in the cluster.

    .venv/bin/python bench/bench_growth.py [--steps 6] [--rounds 1] [--jobs 500] [--quick] [--no-record]

1. Trainer (tiny builtin VLM, LoRA r=8, 32-token completions, 2 queries per step; built from the
   trainer's public pieces exactly as bench_trainer.py does): step time for list size n = 1, 2, 4,
   8 items per query (G = 8) and for numGenerations G = 4, 8, 16 (n = 1; batch = 2 G). Per
   configuration: min/median/max over the steps (first step dropped); with ``--rounds`` > 1 the
   configurations run interleaved (order reversed every other round) and the steps are pooled.
2. Operator (kmock emulator + ``kopf run -m rarl_operator.handlers``, bench_operator.OperatorBench):
   RARLJobs created one at a time up to ``--jobs`` (default 500, none deleted); the create->Job
   latency of the jobs just before each milestone (10, 25, 50, 100, 250, 500 jobs in the cluster;
   window of 10 jobs, min/median/max) shows how the latency grows with cluster size.
Plots: bench/growth_trainer.png and bench/growth_operator.png (matplotlib, Agg). The figures
are appended to bench/RESULTS.md unless ``--no-record``; ``--quick``: 3 steps, 100 jobs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import BENCH, add_common_args, fmt_mmm, goal, info, mmm, record

MODEL = "builtin:tiny-qwen2.5-vl"
LENGTH = 32
QUERIES = 2
LIST_SIZES = (1, 2, 4, 8)
GROUPS = (4, 8, 16)
MILESTONES = (10, 25, 50, 100, 250, 500)
WINDOW = 10


def trainer_steps(tmp: Path, steps: int, n: int, group: int) -> list[float]:
    """Step times (s) of one RARL trainer run, the first step dropped."""
    import torch
    from bench_trainer import StepTimer, build_rarl, job

    from rarl.progress import FileProgressReporter
    from rarl_trainer.config import DistInfo, stage_plan
    from rarl_trainer.loop import Run

    rjob = job(tmp, base=MODEL, modality="image", steps=steps, batch=QUERIES * group, group=group,
               length=LENGTH, list_sizes=(n,))
    training = Run(rjob, tmp / "run", resume="never", dist=DistInfo(),
                   reporter=FileProgressReporter(tmp / "run" / "progress.json")).set_up()
    trainer = build_rarl(training, stage_plan(rjob.spec)[0])
    for cb in list(trainer.callback_handler.callbacks):
        if type(cb).__name__ in ("PrinterCallback", "ProgressCallback"):
            trainer.remove_callback(cb)
    timer = StepTimer()
    trainer.add_callback(timer)
    torch.manual_seed(0)
    trainer.train()
    if training.session.uploader is not None:
        training.session.uploader.wait()
    return timer.times[1:]


def trainer_growth(steps: int, rounds: int) -> dict[str, dict]:
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import logging

    logging.getLogger("rarl_trainer").setLevel(logging.WARNING)
    configs = [("n", n, 8) for n in LIST_SIZES] + [("G", 1, g) for g in GROUPS if g != 8]
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        for r in range(rounds):
            for _axis, n, g in configs if r % 2 == 0 else configs[::-1]:
                key = f"n={n},G={g}"
                times = trainer_steps(Path(d) / f"{r}-{n}-{g}", steps, n, g)
                entry = out.setdefault(key, {"n": n, "G": g, "times": [], "round_medians": []})
                entry["times"] += times
                entry["round_medians"].append(statistics.median(times))
                print(f"round {r} {key}: median step {statistics.median(times) * 1000:.0f} ms", flush=True)
    return out


def operator_growth(jobs: int) -> dict[int, list[float]]:
    from bench_operator import OperatorBench

    latencies = []
    t0 = time.perf_counter()
    with OperatorBench() as ob:
        for i in range(jobs):
            latencies.append(ob.latency(f"grow-{i}"))
            if (i + 1) % 100 == 0:
                print(f"{i + 1} jobs, {time.perf_counter() - t0:.0f} s", flush=True)
    return {m: latencies[m - WINDOW:m] for m in MILESTONES if m <= jobs}


def plot_trainer(res: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, xs, keyf, label in (
        (axes[0], LIST_SIZES, lambda x: f"n={x},G=8", "list size n (items per query), G = 8"),
        (axes[1], GROUPS, lambda x: f"n=1,G={x}", "numGenerations G, n = 1, batch = 2 G"),
    ):
        lo, med, hi = zip(*(mmm(res[keyf(x)]["times"]) for x in xs), strict=True)
        ax.errorbar(xs, [m * 1000 for m in med], yerr=[[(m - a) * 1000 for a, m in zip(lo, med, strict=True)],
                                                        [(b - m) * 1000 for b, m in zip(hi, med, strict=True)]],
                    marker="o", capsize=4)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(label)
        ax.set_ylabel("step time (ms), median, bar = min..max")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.suptitle(f"RARL trainer step time, {MODEL}, {LENGTH}-token completions, {QUERIES} queries/step (CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_operator(res: dict[int, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(res)
    lo, med, hi = zip(*(mmm(res[x]) for x in xs), strict=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(xs, [m * 1000 for m in med], yerr=[[(m - a) * 1000 for a, m in zip(lo, med, strict=True)],
                                                    [(b - m) * 1000 for b, m in zip(hi, med, strict=True)]],
                marker="o", capsize=4)
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("RARLJobs in the cluster")
    ax.set_ylabel(f"create->Job latency (ms), last {WINDOW} jobs")
    ax.set_ylim(bottom=0, top=max(max(hi) * 1000 * 1.2, 50))
    ax.grid(alpha=0.3)
    ax.set_title("Operator create->Job latency vs cluster size (kmock; goal p50 500 ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="steps per trainer run (default 6, --quick 3)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 1)")
    ap.add_argument("--jobs", type=int, default=None, help="RARLJobs created (default 500, --quick 100)")
    ap.add_argument("--skip-trainer", action="store_true")
    ap.add_argument("--skip-operator", action="store_true")
    add_common_args(ap)
    args = ap.parse_args()
    steps = args.steps or (3 if args.quick else 6)
    rounds = args.rounds or 1
    jobs = args.jobs or (100 if args.quick else 500)
    parts, packages = [], []

    if not args.skip_operator:
        op = operator_growth(jobs)
        plot_operator(op, BENCH / "growth_operator.png")
        rows = ["| RARLJobs in the cluster | create->Job min / median / max (ms), last 10 jobs |", "|---|---|"]
        rows += [f"| {m} | {fmt_mmm(v, 1000, '.0f')} |" for m, v in op.items()]
        first, last = statistics.median(op[min(op)]), statistics.median(op[max(op)])
        growth = last / first
        parts.append(f"Operator (kmock emulator, `kopf run -m rarl_operator.handlers`, 8 workers): {jobs} RARLJobs created "
                     f"one at a time, none deleted. Median latency at {max(op)} jobs / at {min(op)} jobs: "
                     f"{growth:.2f}x. Plot: bench/growth_operator.png.\n\n" + "\n".join(rows))
        print(parts[-1], flush=True)
        goal("growth", f"operator create->Job median at {max(op)} jobs", last * 1000, 500, " ms", fmt=".0f")
        info("growth", f"operator latency growth {min(op)} -> {max(op)} jobs", f"{growth:.2f}x")
        packages += ["kopf", "kmock"]

    if not args.skip_trainer:
        tr = trainer_growth(steps, rounds)
        plot_trainer(tr, BENCH / "growth_trainer.png")
        rows = ["| n (items/query) | G | batch | step min / median / max (ms) | median / median at n=1,G=8 |",
                "|---|---|---|---|---|"]
        base = statistics.median(tr["n=1,G=8"]["times"])
        order = [f"n={n},G=8" for n in LIST_SIZES] + [f"n=1,G={g}" for g in GROUPS if g != 8]
        for key in order:
            e = tr[key]
            rows.append(f"| {e['n']} | {e['G']} | {QUERIES * e['G']} | {fmt_mmm(e['times'], 1000, '.0f')} | "
                        f"{statistics.median(e['times']) / base:.2f}x |")
        n8 = statistics.median(tr["n=8,G=8"]["times"]) / base
        g16 = statistics.median(tr["n=1,G=16"]["times"]) / statistics.median(tr["n=1,G=4"]["times"])
        parts.append(f"Trainer ({MODEL}, LoRA r=8, {LENGTH}-token completions, {QUERIES} queries per step, "
                     f"{steps} steps per run (first dropped) x {rounds} interleaved rounds). Step time n=8 / n=1: "
                     f"{n8:.2f}x; G=16 / G=4: {g16:.2f}x (4x the completions). Plot: bench/growth_trainer.png.\n\n"
                     + "\n".join(rows))
        print(parts[-1], flush=True)
        info("growth", "trainer step n=8 / n=1 (G=8)", f"{n8:.2f}x")
        info("growth", "trainer step G=16 / G=4 (n=1)", f"{g16:.2f}x")
        packages += ["torch", "transformers", "trl", "peft"]

    record("bench_growth.py: trainer step time vs list size and G; operator latency vs cluster size",
           "\n\n".join(parts), ["matplotlib", *packages], enabled=not args.no_record and bool(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
