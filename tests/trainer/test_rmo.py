"""RMO: zero-spread groups get a spread, only the answer span changes, seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rarl.answers import find_answer_span, find_think_span, parse_answer
from rarl.api.types import RMOSpec, TargetSpec
from rarl_trainer.prompts import reference_answer
from rarl_trainer.rewards import RewardConfig, score
from rarl_trainer.rmo import MINIMAL_THINK, RMOConfig, apply_rmo_to_batch, mutate_group, rewrite_answer

RANGE = (1.0, 9.0)


def _think(text: str) -> str | None:
    span = find_think_span(text)
    return None if span is None else text[span[0]:span[1]]


def _outside_answer(text: str) -> tuple[str, str]:
    span = find_answer_span(text)
    assert span is not None
    return text[: span[0]], text[span[1]:]


completion_st = st.one_of(
    st.builds(lambda t, a: f"<think>{t}</think> <answer>{a}</answer> tail", st.text(alphabet=st.characters(
        blacklist_characters="<>"), max_size=30), st.sampled_from(["[3, 5]", "[1, 9]", "oops", "[2]"])),
    st.text(max_size=40),
)


@settings(max_examples=150, deadline=None)
@given(
    targets=st.lists(st.integers(1, 9).map(float), min_size=1, max_size=8),
    base=completion_st,
    group=st.integers(2, 8),
    sigma=st.sampled_from([0.0, 0.05, 0.5]),
    mutations=st.integers(1, 8),
    mode=st.sampled_from(["auto", "value", "order"]),
    weights=st.sampled_from([(1.0, 1.0, 0.5), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)]),
    seed=st.integers(0, 2**16),
    perfect=st.booleans(),
)
def test_zero_spread_group_gets_nonzero_spread(targets, base, group, sigma, mutations, mode, weights, seed, perfect):
    w_reg, w_rank, w_fmt = weights
    if w_reg == 0 and w_fmt == 0 and len(targets) < 2:
        return  # nothing can differ: ranking is constant for n = 1 (documented limit)
    cfg_r = RewardConfig(delta=0.8, target_min=1, target_max=9, w_regression=w_reg, w_ranking=w_rank, w_format=w_fmt)
    text = reference_answer(targets, 1.0, "same reasoning") if perfect else base
    completions = [text] * group
    rewards = [score(c, targets, cfg_r).total for c in completions]
    cfg = RMOConfig(sigma=sigma, mutations=mutations, mode=mode, value_range=RANGE)
    result = mutate_group(completions, rewards, targets, cfg, np.random.default_rng(seed),
                          score_fn=lambda c: score(c, targets, cfg_r).total)
    assert result.reason == "zero_spread"
    assert 1 <= len(result.indices) <= group - 1
    new = [score(c, targets, cfg_r).total for c in result.completions]
    assert max(new) - min(new) > 0
    assert result.rewards == pytest.approx(new)
    for i, (old, mutated) in enumerate(zip(completions, result.completions, strict=True)):
        if i not in result.indices:
            assert mutated == old
            continue
        # a wrong-count answer is the documented last resort when values cannot move the reward
        values_matter = w_reg > 0 or (w_rank > 0 and len(set(targets)) > 1)
        assert parse_answer(mutated, len(targets)).ok or not values_matter
        if _think(old) is not None and find_answer_span(old) is not None:
            assert _think(mutated) == _think(old)  # byte-identical reasoning
            assert _outside_answer(mutated) == _outside_answer(old)  # only the answer span changed
        elif _think(old) is not None:
            assert _think(mutated) == _think(old)


def test_only_answer_span_changes_and_minimal_think() -> None:
    old = "pre <think>my \u00e9 reasoning\n</think>\n<answer>[1, 2]</answer> post"
    new = rewrite_answer(old, [3.0, 4.0], 1.0)
    assert new == "pre <think>my \u00e9 reasoning\n</think>\n<answer>[3, 4]</answer> post"
    assert rewrite_answer("<think>r</think> no answer", [2.5], 0.5) == "<think>r</think><answer>[2.5]</answer>"
    assert rewrite_answer("garbage", [2.0], 1.0) == f"{MINIMAL_THINK}<answer>[2]</answer>"


def test_values_noise_clipping_and_rounding() -> None:
    cfg = RMOConfig(sigma=10.0, mutations=7, mode="value", value_range=RANGE, precision=0.5)
    group = ["<think>t</think><answer>[1, 1]</answer>"] * 8
    result = mutate_group(group, [0.0] * 8, [1.0, 9.0], cfg, np.random.default_rng(0))
    for i in result.indices:
        values = parse_answer(result.completions[i], 2).values
        assert values is not None
        assert all(1.0 <= v <= 9.0 and (v * 2).is_integer() for v in values)


def test_order_mode_permutes_reference_values() -> None:
    cfg = RMOConfig(sigma=0.0, mutations=3, mode="order", swaps=1, value_range=RANGE)
    targets = [2.0, 7.0, 4.0, 9.0]
    result = mutate_group(["x"] * 4, [0.0] * 4, targets, cfg, np.random.default_rng(1))
    for i in result.indices:
        values = parse_answer(result.completions[i], 4).values
        assert sorted(values) == sorted(targets)
        assert values != targets  # one adjacent swap of distinct values changes the list


def test_trigger_rules_and_selection() -> None:
    cfg = RMOConfig(epsilon=0.01, probability=0.0, mutations=2, value_range=RANGE)
    texts = [f"<think>{i}</think><answer>[3]</answer>" for i in range(4)]
    none = mutate_group(texts, [0.1, 0.5, 0.9, 0.3], [3.0], cfg, np.random.default_rng(0))
    assert none.reason is None and none.indices == [] and none.completions == texts
    always = RMOConfig(epsilon=0.0, probability=1.0, mutations=2, value_range=RANGE)
    rnd = mutate_group(texts, [0.1, 0.5, 0.9, 0.3], [3.0], always, np.random.default_rng(0))
    assert rnd.reason == "random" and rnd.indices == [0, 3]  # the two lowest rewards
    off = RMOConfig(enabled=False, value_range=RANGE)
    assert mutate_group(texts, [0.0] * 4, [3.0], off, np.random.default_rng(0)).reason is None
    assert mutate_group(texts[:1], [0.0], [3.0], cfg, np.random.default_rng(0)).reason is None


def test_determinism_with_seed() -> None:
    cfg = RMOConfig(probability=0.5, mutations=3, sigma=0.2, value_range=RANGE)
    texts = [f"<think>r{i}</think><answer>[{i % 9 + 1}, 3]</answer>" for i in range(32)]
    targets = [[float(g % 9 + 1), 3.0] for g in range(4)]
    rewards = [float(i % 3) if i < 16 else 0.5 for i in range(32)]
    cfg_r = RewardConfig(delta=0.8, target_min=1, target_max=9)
    runs = [apply_rmo_to_batch(texts, 8, targets, rewards, cfg, np.random.default_rng(7), cfg_r) for _ in range(2)]
    assert runs[0] == runs[1]
    other = apply_rmo_to_batch(texts, 8, targets, rewards, cfg, np.random.default_rng(8), cfg_r)
    assert other != runs[0]
    assert runs[0].reasons[2:] == ["zero_spread", "zero_spread"]
    assert sum(runs[0].mutated) == 3 * sum(r is not None for r in runs[0].reasons)
    assert 0.5 <= runs[0].mutation_rate <= 1.0


def test_from_spec_and_validation() -> None:
    cfg = RMOConfig.from_spec(RMOSpec(sigma=0.1, mutations=2, mode="order"), TargetSpec(min=0, max=10, precision=0.5))
    assert cfg.value_range == (0.0, 10.0) and cfg.precision == 0.5 and cfg.mode == "order" and cfg.mutations == 2
    with pytest.raises(ValueError):
        mutate_group(["a"], [0.0, 1.0], [1.0], cfg, np.random.default_rng(0))
    with pytest.raises(ValueError):
        mutate_group(["a", "b"], [0.0, 0.0], [1.0], RMOConfig(), np.random.default_rng(0))
