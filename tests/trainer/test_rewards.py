"""The RARL reward: bounds, perfect/reversed answers, delta, malformed text, batch fidelity, spec wiring."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rarl.api.types import RARLJobSpec, RewardWeights, StageSpec
from rarl_trainer.prompts import reference_answer
from rarl_trainer.rewards import (
    RewardConfig,
    batch_fidelity_rewards,
    ranking_reward,
    regression_reward,
    score,
    score_batch,
    score_group,
)

CFG = RewardConfig(delta=2.0, target_min=0.0, target_max=20.0)


def _answer(values: list[float]) -> str:
    return "<think>reasoning</think><answer>[" + ", ".join(f"{v:g}" for v in values) + "]</answer>"


def _in_unit(b) -> bool:
    return all(0.0 <= t <= 1.0 for t in (b.format, b.regression, b.ranking))


targets_st = st.lists(st.integers(0, 20).map(float), min_size=1, max_size=16)


@settings(max_examples=200, deadline=None)
@given(targets_st, st.data(), st.floats(0, 1), st.booleans())
def test_every_term_in_unit_interval(targets: list[float], data, alpha: float, batch: bool) -> None:
    values = data.draw(st.lists(st.floats(-100, 100, allow_nan=False), min_size=len(targets), max_size=len(targets)))
    cfg = RewardConfig(delta=2.0, target_min=0, target_max=20, alpha=alpha, batch_ranking=batch)
    b = score(_answer(values), targets, cfg)
    assert _in_unit(b)
    assert b.total == pytest.approx(cfg.w_regression * b.regression + cfg.w_ranking * b.ranking + cfg.w_format * b.format)


@settings(max_examples=100, deadline=None)
@given(targets_st)
def test_perfect_answer_scores_one(targets: list[float]) -> None:
    b = score(reference_answer(targets, 1.0), targets, CFG)
    assert b.format == 1.0 and b.regression == 1.0
    if len(targets) >= 2:
        assert b.ranking == 1.0
        assert b.total == pytest.approx(CFG.max_total)
    else:
        assert b.ranking == 0.0  # n = 1 without batch ranking: documented constant 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=2, max_size=16, unique=True))
def test_reversed_list_gets_zero_ranking_with_alpha_one(raw: list[int]) -> None:
    targets = sorted(float(t) for t in raw)
    reversed_values = list(reversed(targets))
    assert ranking_reward(reversed_values, targets, alpha=1.0) == 0.0
    cfg = RewardConfig(delta=2.0, target_min=0, target_max=20, alpha=1.0)
    assert score(_answer(reversed_values), targets, cfg).ranking == 0.0


def test_ranking_ties_and_exact_order() -> None:
    # tied targets are unconstrained for exact_order; tau-b handles the tie
    assert ranking_reward([1, 2, 3], [1, 1, 3], alpha=0.0) == 1.0
    assert ranking_reward([2, 1, 3], [1, 1, 3], alpha=0.0) == 1.0
    assert ranking_reward([1, 1, 3], [1, 2, 3], alpha=0.0) == 0.0  # predicted tie breaks a strict pair
    assert ranking_reward([5, 5], [1, 2], alpha=1.0) == 0.5  # constant prediction: tau taken as 0
    assert ranking_reward([1, 9], [4, 4], alpha=0.5) == 1.0  # nothing to rank


def test_regression_decreases_with_error_and_is_zero_beyond_delta() -> None:
    errors = [0.0, 0.5, 1.0, 1.5, 1.99, 2.0, 3.0, 10.0]
    rewards = [regression_reward([5 + e], [5], delta=2.0) for e in errors]
    assert rewards == sorted(rewards, reverse=True)
    assert rewards[0] == 1.0
    assert rewards[1] == pytest.approx(1 - 0.25 / 4)
    assert all(r == 0.0 for r in rewards[5:])
    assert regression_reward([5 - 1.0], [5], 2.0) == regression_reward([5 + 1.0], [5], 2.0)


def test_values_are_clipped_to_range() -> None:
    b = score("<think>t</think><answer>25</answer>", [20.0], CFG)
    assert b.values == (20.0,) and b.regression == 1.0


def test_missing_think_scores_values_but_not_format() -> None:
    b = score("<answer>[3, 5]</answer>", [3, 5], CFG)
    assert b.format == 0.0 and b.regression == 1.0 and b.ranking == 1.0


@settings(max_examples=300, deadline=None)
@given(st.text(), targets_st)
def test_malformed_text_scores_zero_and_never_raises(text: str, targets: list[float]) -> None:
    b = score(text, targets, CFG)
    assert _in_unit(b)
    if "<answer>" not in text.lower() or "</answer>" not in text.lower():
        assert (b.format, b.regression, b.ranking, b.total) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "text",
    ["", "<think>x</think>", "<answer>[1, 2]</answer><answer>[1, 2]</answer>", "<answer>[nan, 2]</answer>",
     "<think>x</think><answer>[1, 2, 3]</answer>", "\x00\ud7ff\U0010ffff<answer>[\u0661, 2]</answer>"],
)
def test_parse_failures_score_zero(text: str) -> None:
    b = score(text, [1.0, 2.0], CFG)
    assert (b.format, b.regression, b.ranking, b.total) == (0.0, 0.0, 0.0, 0.0)
    assert b.reason


def test_batch_fidelity_ranking() -> None:
    cfg = RewardConfig(delta=2.0, target_min=0, target_max=20, batch_ranking=True)
    group = 3
    targets = [[2.0], [10.0], [18.0]]
    good = [_answer([t[0] + d]) for t in targets for d in (0.0, 1.0, -1.0)]
    out = score_batch(good, targets, cfg, group)
    assert all(_in_unit(b) for b in out)
    assert min(b.ranking for b in out) > 0.9  # ordered correctly against the other queries
    bad = [_answer([20 - t[0]]) for t in targets for _ in range(group)]
    worse = score_batch(bad, targets, cfg, group)
    assert max(b.ranking for b in worse) < 0.1
    # failed parses get 0 and are left out of the statistics
    rewards = batch_fidelity_rewards([[1.0, None], [5.0, 6.0]], [1.0, 5.0], 20.0)
    assert rewards[0][1] == 0.0 and rewards[0][0] > 0.9
    assert batch_fidelity_rewards([[1.0]], [1.0], 20.0) == [[0.0]]  # no partner


def test_score_batch_without_batch_ranking_equals_groups() -> None:
    texts = [_answer([1, 2]), _answer([2, 1]), _answer([3]), "junk"]
    out = score_batch(texts, [[1, 2], [3]], CFG, 2)
    assert out[:2] == score_group(texts[:2], [1, 2], CFG)
    assert out[3].total == 0.0
    with pytest.raises(ValueError):
        score_batch(texts, [[1, 2]], CFG, 2)


def test_from_spec_uses_stage_weights_and_delta() -> None:
    spec = RARLJobSpec.model_validate({
        "model": {"base": "tiny"},
        "dataset": {"format": "synthetic"},
        "checkpoint": {"uri": "/tmp/ck"},
        "output": {"uri": "/tmp/out"},
        "reward": {"rankingAlpha": 0.3, "batchRanking": True, "weights": {"regression": 2, "ranking": 3, "format": 1}},
    })
    stage = StageSpec(name="s", steps=1, reward_weights=RewardWeights(regression=1.0, ranking=0.0, format=0.5))
    cfg = RewardConfig.from_spec(spec, stage)
    assert cfg.delta == pytest.approx(0.8)  # a tenth of 1..9
    assert (cfg.w_regression, cfg.w_ranking, cfg.w_format) == (1.0, 0.0, 0.5)
    assert cfg.alpha == 0.3 and cfg.batch_ranking
    assert (cfg.target_min, cfg.target_max) == (1.0, 9.0)
    base = RewardConfig.from_spec(spec, StageSpec(name="t", steps=1))
    assert (base.w_regression, base.w_ranking, base.w_format) == (2.0, 3.0, 1.0)
    assert math.isclose(RewardConfig.from_spec(spec, None).w_ranking, 3.0)
