"""Metrics equal scipy's on random data with ties; evaluate's keys and invalid handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rarl.metrics import (
    accuracy,
    evaluate,
    finite_metrics,
    kendall_tau_b,
    mae,
    pearson_plcc,
    spearman_srcc,
)

tied_lists = st.integers(min_value=2, max_value=30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(min_value=0, max_value=5), min_size=n, max_size=n),
        st.lists(st.integers(min_value=0, max_value=5), min_size=n, max_size=n),
    )
)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(tied_lists)
def test_correlations_match_scipy(pair: tuple[list[int], list[int]]) -> None:
    x, y = (list(map(float, v)) for v in pair)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_tau = stats.kendalltau(x, y, variant="b").statistic
        ref_srcc = stats.spearmanr(x, y).statistic
        ref_plcc = stats.pearsonr(x, y).statistic if len(set(x)) > 1 and len(set(y)) > 1 else float("nan")
    assert _same(kendall_tau_b(x, y), float(ref_tau))
    assert _same(spearman_srcc(x, y), float(ref_srcc))
    assert _same(pearson_plcc(x, y), float(ref_plcc))


def test_continuous_random_data() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    assert kendall_tau_b(list(x), list(y)) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman_srcc(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert pearson_plcc(x, y) == pytest.approx(stats.pearsonr(x, y).statistic)


def test_mae_and_accuracy() -> None:
    assert mae([1, 2, 3], [1, 4, 3]) == pytest.approx(2 / 3)
    assert accuracy([1.4, 2.6, 5], [1, 3, 3]) == pytest.approx(2 / 3)  # rounded to precision 1
    assert accuracy([1.4, 2.6, 5], [1, 3, 3], within=2) == 1.0
    assert accuracy([5.04, 5.2], [5.0, 5.0], precision=0.1) == 0.5


def test_evaluate_keys_and_invalid_rows() -> None:
    rows = [
        {"pred": [3], "target": [3]},
        {"pred": [5], "target": [4]},
        {"pred": [8], "target": [9]},
        {"pred": None, "target": [2]},  # failed parse
        {"pred": [1, 2], "target": [1, 2]},
        {"pred": [2, 1], "target": [1, 2]},
        {"pred": [1, 2, 3], "target": [1, 2]},  # wrong count: invalid
        {"pred": [1, 2, 3, 4], "target": [4, 3, 2, 1]},
        {"completion": "<think>a</think><answer>[1, 2, 3, 4]</answer>", "target": [1, 2, 3, 4]},
    ]
    m = evaluate(rows)
    assert m["count"] == 9
    assert m["invalid_rate"] == pytest.approx(2 / 9)
    assert m["n1/invalid_rate"] == pytest.approx(1 / 4)
    assert m["n1/mae"] == pytest.approx(2 / 3)  # valid rows only
    assert m["n1/acc"] == pytest.approx(1 / 4)  # invalid counted as wrong
    assert m["n1/acc_within_1"] == pytest.approx(3 / 4)
    assert m["n1/srcc"] == pytest.approx(stats.spearmanr([3, 5, 8], [3, 4, 9]).statistic)
    assert m["n1/plcc"] == pytest.approx(stats.pearsonr([3, 5, 8], [3, 4, 9]).statistic)
    assert m["n2/tau"] == pytest.approx(0.0)  # mean of +1 and -1, the invalid row left out
    assert m["n4/tau"] == pytest.approx(0.0)  # -1 and +1
    assert {"n2/count", "n4/count", "n2/mae", "n4/acc"} <= set(m)


def test_evaluate_constant_predictions_and_finite_filter() -> None:
    m = evaluate([{"pred": [2, 2], "target": [1, 3]}, {"pred": [1, 2], "target": [2, 2]}])
    # the only rankable list is tied (the other's targets are tied: left out): nothing was ranked, tau undefined
    assert math.isnan(m["n2/tau"]) and "n2/tau" not in finite_metrics(m)  # (issue 28 row 8: it read 0.000)
    assert m["n2/tied_rate"] == 1.0  # ... and is reported as "cannot tell"
    mixed = evaluate([{"pred": [2, 2], "target": [1, 3]}, {"pred": [1, 3], "target": [1, 3]},
                      {"pred": [3, 1], "target": [1, 3]}, {"pred": None, "target": [1, 3]},
                      {"pred": [5, 5, 5, 4], "target": [1, 2, 3, 4]}])
    assert mixed["n2/tau"] == pytest.approx(0.0) and mixed["n2/tied_rate"] == pytest.approx(1 / 3)
    assert mixed["n4/tied_rate"] == 0.0  # a partial tie still ranks (tau-b), only all-tied lists count
    only = evaluate([{"pred": [3], "target": [3]}])
    assert math.isnan(only["n1/srcc"])
    assert "n1/srcc" not in finite_metrics(only)
    assert finite_metrics(only)["n1/mae"] == 0.0
