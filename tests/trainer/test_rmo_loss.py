"""RMO reaches the loss: a zero-spread group gets non-zero advantages and gradients only with RMO."""

from __future__ import annotations

import pytest
import torch

from rarl.answers import parse_answer
from tests.trainer.conftest import first_stage_trainer, job_doc


def _trainer(tmp_path, rmo_enabled: bool, base="builtin:tiny-lm", modality="text"):
    stages = [{"name": "s1", "steps": 2, "listSizes": [1],
               "rmo": {"enabled": rmo_enabled, "epsilon": 0.01, "probability": 0.0, "mutations": 1}}]
    return first_stage_trainer(tmp_path, job_doc(tmp_path, base=base, modality=modality, stages=stages))[1]


def _step(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    inputs = trainer._generate_and_score_completions(batch)
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    grad = sum(float(p.grad.abs().sum()) for p in trainer.model.parameters() if p.grad is not None)
    return inputs, grad


@pytest.mark.parametrize("base,modality", [("builtin:tiny-lm", "text"), ("builtin:tiny-qwen2.5-vl", "image")])
def test_rmo_revives_zero_spread_groups(tmp_path, base, modality):
    torch.manual_seed(0)
    trainer = _trainer(tmp_path / "on", True, base, modality)
    inputs, grad = _step(trainer)
    stats = trainer._metrics["train"]
    # The random tiny model never answers correctly: every group had zero spread before RMO.
    assert stats["rarl/zero_spread_groups"][-1] == 1.0
    assert stats["rarl/mutation_rate"][-1] == 1.0
    adv = inputs["advantages"]
    assert adv.abs().max() > 0.1
    # The mutated completions are the tokens the loss sees: they parse to an answer.
    decoded = trainer._tokenizer.batch_decode(inputs["completion_ids"], skip_special_tokens=True)
    parsed = [parse_answer(t, 1).ok for t in decoded]
    assert sum(parsed) == len(decoded) // trainer.num_generations  # one mutation per group
    assert all(adv[i] > 0 for i, ok in enumerate(parsed) if ok)
    assert grad > 0


def test_without_rmo_zero_spread_gives_zero_gradient(tmp_path):
    torch.manual_seed(0)
    trainer = _trainer(tmp_path / "off", False)
    inputs, grad = _step(trainer)
    assert trainer._metrics["train"]["rarl/zero_spread_groups"][-1] == 1.0
    assert trainer._metrics["train"]["rarl/mutation_rate"][-1] == 0.0
    assert float(inputs["advantages"].abs().max()) == 0.0
    assert grad == 0.0
