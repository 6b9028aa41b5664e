"""Cost of RARL's pure-Python core per GRPO group: scoring 8 completions + RMO.

Run: ``.venv/bin/python bench/bench_core.py [--append]``. Reports groups/s for list sizes 1, 2,
4, 8 (and batch-fidelity ranking for n = 1) and the share of a training step the core costs,
assuming a ~0.15 s tiny-model step with one group (goal: <= 1 %). ``--append`` adds the figures to
bench/RESULTS.md (append only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

import numpy as np

from rarl_trainer.prompts import reference_answer
from rarl_trainer.rewards import RewardConfig, score_batch, score_group
from rarl_trainer.rmo import RMOConfig, apply_rmo_to_batch

GROUP = 8
STEP_SECONDS = 0.15
RANGE = (1.0, 116.0)


def _group_texts(rng: np.random.Generator, targets: list[float]) -> list[str]:
    """8 realistic completions: a paragraph of reasoning, noisy values, one malformed."""
    reasoning = "The person has grey hair and wrinkles around the eyes, so I estimate an older age. " * 3
    texts = []
    for k in range(GROUP):
        values = [float(np.clip(t + rng.normal(0, 8), *RANGE)) for t in targets]
        texts.append(reference_answer(values, 1.0, reasoning) if k else "I cannot tell. <answer>maybe 40</answer>")
    return texts


def _time(fn, min_seconds: float = 1.0) -> float:
    """Seconds per call (repeat until min_seconds elapsed)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--append", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cfg = RewardConfig(delta=11.5, target_min=RANGE[0], target_max=RANGE[1])
    rmo_cfg = RMOConfig(probability=1.0, mutations=2, value_range=RANGE)  # mutate every group
    lines = []
    # Zero-spread worst case: 8 distinct completions with equal rewards, so RMO rescores them all.
    flat = [0.0] * GROUP
    for n in (1, 2, 4, 8):
        targets = [float(t) for t in rng.choice(np.arange(1, 117), size=n, replace=False)]
        texts = _group_texts(rng, targets)
        score_s = _time(lambda texts=texts, targets=targets: score_group(texts, targets, cfg))
        rewards = [b.total for b in score_group(texts, targets, cfg)]
        mut_rng = np.random.default_rng(1)

        def both(texts=texts, targets=targets, rewards=rewards, mut_rng=mut_rng) -> None:
            score_group(texts, targets, cfg)
            apply_rmo_to_batch(texts, GROUP, [targets], rewards, rmo_cfg, mut_rng, cfg)

        def zero(texts=texts, targets=targets, mut_rng=mut_rng) -> None:
            score_group(texts, targets, cfg)
            apply_rmo_to_batch(texts, GROUP, [targets], flat, rmo_cfg, mut_rng, cfg)

        both_s, zero_s = _time(both), _time(zero)
        lines.append(
            f"| n={n} | {score_s * 1e3:.3f} | {both_s * 1e3:.3f} | {zero_s * 1e3:.3f} | {1 / zero_s:,.0f} | "
            f"{100 * zero_s / STEP_SECONDS:.3f} % |"
        )
    # n = 1 with batch fidelity ranking: a batch of 8 groups scored together, cost per group
    batch_cfg = RewardConfig(delta=11.5, target_min=RANGE[0], target_max=RANGE[1], batch_ranking=True)
    targets_b = [[float(t)] for t in rng.choice(np.arange(1, 117), size=8, replace=False)]
    texts_b = [t for tg in targets_b for t in _group_texts(rng, tg)]
    batch_s = _time(lambda: score_batch(texts_b, targets_b, batch_cfg, GROUP)) / len(targets_b)
    lines.append(f"| n=1 batch fidelity (8 groups) | {batch_s * 1e3:.3f} | - | - | {1 / batch_s:,.0f} | "
                 f"{100 * batch_s / STEP_SECONDS:.3f} % |")

    header = [
        "| query | score 8 (ms) | score 8 + RMO random (ms) | score 8 + RMO zero-spread (ms) "
        "| groups/s (worst) | share of a 0.15 s step (worst) |",
        "|---|---|---|---|---|---|",
    ]
    table = "\n".join(header + lines)
    print(table)
    if args.append:
        import numpy

        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        machine = f"{platform.machine()}, {platform.processor() or platform.platform()}, 2 cores, no GPU"
        versions = f"Python {sys.version.split()[0]}, numpy {numpy.__version__}"
        note = (
            f"\n## bench_core.py: reward + RMO per group of {GROUP} ({stamp})\n\n"
            f"Machine: {machine}; {versions}. RMO mutates 2 of 8 in every group; the zero-spread column "
            "(8 distinct texts, all rescored for the spread guarantee) is the worst case. "
            "One group per 0.15 s tiny-model step.\n\n"
            f"{table}\n"
        )
        path = Path(__file__).with_name("RESULTS.md")
        with path.open("a", encoding="utf-8") as fh:
            fh.write(note)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
