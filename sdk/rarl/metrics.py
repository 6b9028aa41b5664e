"""Evaluation metrics of RARL, in pure Python (the SDK has no numpy; scipy is only used by the tests).

n = 1 queries: MAE, exact and within-k accuracy, SRCC, PLCC (pooled over all n = 1 rows).
n >= 2 queries: mean Kendall tau-b per list size. ``evaluate`` turns prediction rows into one
flat dict with stable keys.

Invalid predictions (failed parse, wrong count, non-finite values) are counted, never dropped
silently:

* accuracies (``nK/acc``, ``nK/acc_within_k``) count an invalid row's items as wrong, so a model
  cannot raise its accuracy by refusing to answer;
* MAE, SRCC, PLCC and tau need a value, so they use valid rows only; ``invalid_rate`` and
  ``nK/invalid_rate`` report the share of rows left out.
* A valid list whose predictions are all equal has no ranking: its tau counts as 0, and
  ``nK/tied_rate`` reports the share of such lists, so "cannot tell" is not mistaken for "ranked at
  chance"; when every list is tied, ``nK/tau`` is undefined (NaN), not 0. A list whose targets are
  all equal has nothing to rank and is left out of both.
* A metric that is undefined (no valid row, constant inputs for SRCC/PLCC) is NaN; use
  ``finite_metrics`` before writing metrics where NaN is not allowed (JSON, Kubernetes status).

Rows that carry a model ``completion`` instead of ``pred`` are parsed by ``rarl.answers``, as the reward parses.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rarl.answers import parse_answer

__all__ = [
    "accuracy",
    "evaluate",
    "finite_metrics",
    "kendall_tau_b",
    "mae",
    "pair_counts",
    "pearson_plcc",
    "rankdata_average",
    "spearman_srcc",
]

NAN = float("nan")


def mae(pred: Sequence[float], target: Sequence[float]) -> float:
    """Mean absolute error (NaN on empty input)."""
    if len(pred) == 0:
        return NAN
    return _mean([abs(float(p) - float(t)) for p, t in zip(pred, target, strict=True)])


def accuracy(pred: Sequence[float], target: Sequence[float], precision: float = 1.0, within: int = 0) -> float:
    """Share of predictions within ``within`` precision steps of the target, after rounding both to precision.

    Rounding is half to even (Python's ``round``, as numpy's).
    """
    if len(pred) == 0:
        return NAN
    hits = [abs(round(float(p) / precision) - round(float(t) / precision)) <= within + 1e-9
            for p, t in zip(pred, target, strict=True)]
    return sum(hits) / len(hits)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall tau-b in O(n^2) pure Python (lists are short); NaN when either side is constant (as scipy)."""
    concordant, discordant, ties_x, ties_y = pair_counts(x, y)
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    if denom == 0:
        return NAN
    return (concordant - discordant) / denom


def pair_counts(x: Sequence[float], y: Sequence[float]) -> tuple[int, int, int, int]:
    """(concordant, discordant, tied in x only, tied in y only) pairs; pairs tied in both are not counted."""
    n = len(x)
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        xi, yi = x[i], y[i]
        for j in range(i + 1, n):
            dx = xi - x[j]
            dy = yi - y[j]
            if dx == 0:
                if dy != 0:
                    ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    return concordant, discordant, ties_x, ties_y


def rankdata_average(values: Sequence[float]) -> list[float]:
    """Ranks 1..n with ties given their average rank (scipy.stats.rankdata 'average')."""
    a = [float(v) for v in values]
    order = sorted(range(len(a)), key=a.__getitem__)
    ranks = [0.0] * len(a)
    i, n = 0, len(a)
    while i < n:
        j = i
        while j + 1 < n and a[order[j + 1]] == a[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            ranks[k] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def pearson_plcc(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson linear correlation; NaN when fewer than 2 points or a side is constant."""
    if len(x) < 2:
        return NAN
    a = [float(v) for v in x]
    b = [float(v) for v in y]
    mean_a, mean_b = _mean(a), _mean(b)
    a = [v - mean_a for v in a]
    b = [v - mean_b for v in b]
    denom = math.sqrt(math.fsum(v * v for v in a) * math.fsum(v * v for v in b))
    if denom == 0:
        return NAN
    return max(-1.0, min(1.0, math.fsum(u * v for u, v in zip(a, b, strict=True)) / denom))


def spearman_srcc(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson of average ranks, as scipy)."""
    if len(x) < 2:
        return NAN
    return pearson_plcc(rankdata_average(x), rankdata_average(y))


def _row_values(row: Mapping[str, Any]) -> tuple[list[float], list[float] | None]:
    """(targets, predictions or None when invalid) of one evaluation row."""
    target = [float(v) for v in row["target"]]
    pred = row.get("pred")
    if pred is None and "completion" in row:
        pred = parse_answer(str(row["completion"]), len(target)).values
    if pred is None or isinstance(pred, (str, bytes)):
        return target, None
    if not isinstance(pred, (list, tuple)):
        pred = [pred]
    try:
        values = [float(v) for v in pred]
    except (TypeError, ValueError):
        return target, None
    if len(values) != len(target) or not all(math.isfinite(v) for v in values):
        return target, None
    return target, values


def evaluate(
    rows: Iterable[Mapping[str, Any]],
    precision: float = 1.0,
    within: Sequence[int] = (1,),
) -> dict[str, float]:
    """Flat metrics of prediction rows ``{"pred": [...] | None, "target": [...]}``.

    A row may carry ``"completion"`` (model text) instead of ``"pred"``; it is parsed with
    ``parse_answer``. Keys (K = list size present in the rows): ``count``, ``invalid_rate``,
    ``nK/count``, ``nK/invalid_rate``, ``nK/mae``, ``nK/acc``, ``nK/acc_within_<k>``,
    ``n1/srcc``, ``n1/plcc``, ``n1/tau`` (pooled), and for K >= 2 ``nK/tau`` (mean per list) and
    ``nK/tied_rate`` (share of those lists whose predictions are all tied).
    """
    by_size: dict[int, list[tuple[list[float], list[float] | None]]] = defaultdict(list)
    for row in rows:
        target, pred = _row_values(row)
        if len(target) == 0:
            raise ValueError("a row has an empty target list")
        by_size[len(target)].append((target, pred))

    out: dict[str, float] = {}
    total = sum(len(v) for v in by_size.values())
    invalid_total = sum(1 for v in by_size.values() for _, p in v if p is None)
    out["count"] = float(total)
    out["invalid_rate"] = invalid_total / total if total else NAN

    for size in sorted(by_size):
        rows_k = by_size[size]
        key = f"n{size}"
        valid = [(t, p) for t, p in rows_k if p is not None]
        out[f"{key}/count"] = float(len(rows_k))
        out[f"{key}/invalid_rate"] = (len(rows_k) - len(valid)) / len(rows_k)
        all_t = [y for t, _ in rows_k for y in t]
        valid_t = [y for t, _ in valid for y in t]
        valid_p = [v for _, p in valid for v in p]
        # Accuracy over all items; invalid rows count as wrong.
        n_items = len(all_t)
        for k in (0, *within):
            hits = accuracy(valid_p, valid_t, precision, k) * len(valid_t) if valid_t else 0.0
            name = f"{key}/acc" if k == 0 else f"{key}/acc_within_{k}"
            out[name] = hits / n_items if n_items else NAN
        out[f"{key}/mae"] = mae(valid_p, valid_t)
        if size == 1:
            out[f"{key}/srcc"] = spearman_srcc(valid_p, valid_t)
            out[f"{key}/plcc"] = pearson_plcc(valid_p, valid_t)
            out[f"{key}/tau"] = kendall_tau_b(valid_p, valid_t) if len(valid_p) >= 2 else NAN
        else:
            taus = []
            tied = 0
            for t, p in valid:
                if len(set(t)) < 2:
                    continue  # nothing to rank
                tau = kendall_tau_b(p, t)
                tied += math.isnan(tau)
                taus.append(0.0 if math.isnan(tau) else tau)
            # every list tied: nothing was ranked, so tau is undefined (not 0, which reads as "ranked at chance")
            out[f"{key}/tau"] = _mean(taus) if taus and tied < len(taus) else NAN
            out[f"{key}/tied_rate"] = tied / len(taus) if taus else NAN
    return out


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics without NaN/inf values (for JSON and Kubernetes status)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
