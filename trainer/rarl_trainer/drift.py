"""Collapse diagnostics of a GRPO step, from the rollouts it already scored (pure functions, no model calls).

GRPO on an ordinal task can fail without the reward saying so: a small batch's majority moves one
global bias that shifts every item's answer the same way, or the answers contract towards one
value (bench/RESULTS.md, bench_drift.py). Both show in the step's own rollouts long before a
held-out evaluation:

* ``rarl/bias``: mean of (prediction - target) over every item of every parsed rollout (values clipped
  to the target range, as the reward scores them); a recipe
  that drifts shows a bias growing step after step.
* ``rarl/spread_ratio``: std of those predictions / std of their targets; 1 when the answers
  spread like the targets, 0 when every item gets the same answer (collapse to one value).
* ``rarl/parsed_rate``: share of rollouts whose answer parsed (the two figures use these only).

The trainer logs them with TRL's own ``frac_reward_zero_std`` (groups whose reward has no spread
after RMO), ``kl`` (beta > 0) and ``entropy``, and RARL's ``rarl/zero_spread_groups`` (before RMO).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["drift_stats"]


def _std(values: Sequence[float]) -> float:
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def drift_stats(predictions: Sequence[Sequence[float] | None], targets: Sequence[Sequence[float]]) -> dict[str, float]:
    """Bias, spread ratio and parsed share of one step's rollouts.

    ``predictions[i]`` are rollout i's parsed values (None when its answer did not parse) for the
    query with ``targets[i]``. A figure that is undefined (no parsed rollout; targets all equal for
    the spread ratio) is left out rather than reported as 0.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} target lists")
    pred: list[float] = []
    true: list[float] = []
    parsed = 0
    for p, t in zip(predictions, targets, strict=True):
        if p is None or len(p) != len(t):
            continue
        parsed += 1
        pred.extend(float(v) for v in p)
        true.extend(float(v) for v in t)
    out: dict[str, float] = {}
    if predictions:
        out["rarl/parsed_rate"] = parsed / len(predictions)
    if not pred:
        return out
    out["rarl/bias"] = math.fsum(p - t for p, t in zip(pred, true, strict=True)) / len(pred)
    target_std = _std(true)
    if target_std > 0:
        out["rarl/spread_ratio"] = _std(pred) / target_std
    return out
