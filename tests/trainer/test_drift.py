"""Collapse diagnostics of a GRPO step (``rarl_trainer.drift``): each figure moves the right way, and the
trainer logs them from its rollouts."""

from __future__ import annotations

import math

import pytest
import torch

from rarl_trainer.drift import drift_stats
from tests.trainer.conftest import first_stage_trainer, job_doc

TARGETS = [[1.0], [2.0], [4.0], [5.0], [2.0, 4.0], [1.0, 3.0]]


def test_a_faithful_predictor_has_no_bias_and_full_spread():
    stats = drift_stats([list(t) for t in TARGETS], TARGETS)
    assert stats == {"rarl/parsed_rate": 1.0, "rarl/bias": 0.0, "rarl/spread_ratio": 1.0}


@pytest.mark.parametrize("shift", [-1.5, 0.5, 2.0])
def test_a_shifted_predictor_shows_the_shift_as_bias_and_keeps_its_spread(shift):
    stats = drift_stats([[v + shift for v in t] for t in TARGETS], TARGETS)
    assert stats["rarl/bias"] == pytest.approx(shift)
    assert stats["rarl/spread_ratio"] == pytest.approx(1.0)


def test_a_constant_predictor_has_zero_spread():
    stats = drift_stats([[3.0] * len(t) for t in TARGETS], TARGETS)
    assert stats["rarl/spread_ratio"] == 0.0
    half = drift_stats([[3.0 + (v - 3.0) / 2 for v in t] for t in TARGETS], TARGETS)  # halfway towards 3
    assert half["rarl/spread_ratio"] == pytest.approx(0.5)


def test_unparsed_rollouts_are_left_out_and_counted():
    stats = drift_stats([None, [2.0 + 1.0], None, [5.0 + 1.0], [3.0], [1.0, 3.0]], TARGETS)
    assert stats["rarl/parsed_rate"] == pytest.approx(3 / 6)  # the pair answered with one value does not count
    assert stats["rarl/bias"] == pytest.approx(2.0 / 4)  # +1, +1, 0, 0 over the 4 items of parsed answers
    assert drift_stats([None, None], TARGETS[:2]) == {"rarl/parsed_rate": 0.0}
    # Targets all equal: a spread ratio would divide by zero, so it is left out (never reported as 0).
    assert "rarl/spread_ratio" not in drift_stats([[1.0], [2.0]], [[2.0], [2.0]])
    with pytest.raises(ValueError, match="2 predictions for 1 target lists"):
        drift_stats([[1.0], [2.0]], [[1.0]])


def test_the_trainer_logs_the_diagnostics_of_its_own_rollouts(tmp_path, monkeypatch):
    """Rollouts built to answer target + 2 on every item: the step's logged bias is +2, spread ratio 1.

    Generation is replaced (the random tiny model never answers in the format); everything after it
    (scoring, RMO, the metrics TRL logs) is the real trainer's.
    """
    torch.manual_seed(0)
    stages = [{"name": "s1", "steps": 2, "listSizes": [1, 2], "rmo": {"enabled": False}}]
    _, trainer = first_stage_trainer(tmp_path, job_doc(tmp_path, stages=stages, rolloutEngine="trl"))
    tok = trainer._tokenizer

    def shifted(prompt_ids, *args, **kwargs):
        texts = []
        for t in trainer._rarl_targets:
            values = ", ".join(str(int(v) + 2) for v in t)
            texts.append(f"<think>x</think><answer>[{values}]</answer>")
        return [tok(x, add_special_tokens=False)["input_ids"] for x in texts], None

    monkeypatch.setattr(trainer, "_rarl_generate", shifted)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer._generate_and_score_completions(batch)
    stats = trainer._metrics["train"]
    targets = [v for x in batch for v in x["targets"]]
    assert stats["rarl/parsed_rate"][-1] == 1.0
    # Answers are clipped to [min, max] = [1, 5] as the reward scores them: the bias is +2 below 4 only.
    expected = sum(min(v + 2, 5.0) - v for v in targets) / len(targets)
    assert stats["rarl/bias"][-1] == pytest.approx(expected)
    assert math.isfinite(stats["rarl/spread_ratio"][-1])
