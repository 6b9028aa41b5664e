"""Cost of RARL's pure-Python core per GRPO group: scoring 8 completions + RMO.

Run: ``.venv/bin/python bench/bench_core.py [--quick] [--no-record]``. Reports groups/s for list
sizes 1, 2, 4, 8 (and batch-fidelity ranking for n = 1) and the share of a training step the core
costs, assuming a ~0.15 s tiny-model step with one group (goal: <= 1 %). Each figure is timed in
``--repeats`` separate windows (min/median/max; the median is the headline). The figures are
appended to bench/RESULTS.md unless ``--no-record``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import add_common_args, fmt_mmm, goal, mmm, record

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


TIMING = {"min_seconds": 0.4, "repeats": 3}  # set from the flags in main()


def _time1(fn, min_seconds: float) -> float:
    """Seconds per call (repeat until min_seconds elapsed)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def _time(fn) -> list[float]:
    """Seconds per call in separate timing windows."""
    return [_time1(fn, TIMING["min_seconds"]) for _ in range(TIMING["repeats"])]


def _med(values: list[float]) -> float:
    return mmm(values)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="timing windows per figure (min/median/max)")
    add_common_args(parser)
    args = parser.parse_args()
    TIMING.update(repeats=args.repeats, min_seconds=0.1 if args.quick else 0.4)
    worst_share = 0.0
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
        worst_share = max(worst_share, _med(zero_s) / STEP_SECONDS)
        lines.append(
            f"| n={n} | {_med(score_s) * 1e3:.3f} | {_med(both_s) * 1e3:.3f} | {fmt_mmm(zero_s, 1e3)} | "
            f"{1 / _med(zero_s):,.0f} | {100 * _med(zero_s) / STEP_SECONDS:.3f} % |"
        )
    # n = 1 with batch fidelity ranking: a batch of 8 groups scored together, cost per group
    batch_cfg = RewardConfig(delta=11.5, target_min=RANGE[0], target_max=RANGE[1], batch_ranking=True)
    targets_b = [[float(t)] for t in rng.choice(np.arange(1, 117), size=8, replace=False)]
    texts_b = [t for tg in targets_b for t in _group_texts(rng, tg)]
    batch_s = [t / len(targets_b) for t in _time(lambda: score_batch(texts_b, targets_b, batch_cfg, GROUP))]
    lines.append(f"| n=1 batch fidelity (8 groups) | {_med(batch_s) * 1e3:.3f} | - | {fmt_mmm(batch_s, 1e3)} | "
                 f"{1 / _med(batch_s):,.0f} | {100 * _med(batch_s) / STEP_SECONDS:.3f} % |")

    header = [
        "| query | score 8 (ms) | score 8 + RMO random (ms) | score 8 + RMO zero-spread (ms, min / median / max) "
        "| groups/s (worst) | share of a 0.15 s step (worst) |",
        "|---|---|---|---|---|---|",
    ]
    table = "\n".join(header + lines)
    print(table)
    goal("core", "reward+RMO share of a 0.15 s step (worst n)", 100 * worst_share, 1.0, " %")
    record(
        f"bench_core.py: reward + RMO per group of {GROUP}",
        f"RMO mutates 2 of 8 in every group; the zero-spread column (8 distinct texts, all rescored for the "
        f"spread guarantee) is the worst case. One group per 0.15 s tiny-model step. Medians of {TIMING['repeats']} "
        f"windows of {TIMING['min_seconds']} s each.\n\n{table}",
        ["numpy"], enabled=not args.no_record,
    )

if __name__ == "__main__":
    main()
