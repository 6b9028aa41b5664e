"""RL really learns: on the tiny text model, the mean pre-RMO reward of the last steps beats the first.

The task: count apples in a short text (targets 1..5), one value per answer. The random tiny
model never answers at first (reward 0, zero spread everywhere); RMO revives the groups with
reference answers and GRPO turns that into a policy that answers on its own. Measured reward is
the rollouts' reward *before* RMO, so mutations cannot inflate it.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rarl.answers import parse_answer
from rarl.api.validation import parse_job
from rarl_trainer.data import load_items
from rarl_trainer.prompts import build_messages, prompt_for
from tests.trainer.conftest import job_doc, run_trainer, write_job

LEARNING_STAGE = {"name": "learn", "steps": 40, "listSizes": [1],
                  "rewardWeights": {"regression": 1.0, "ranking": 0.0, "format": 0.5},
                  "rmo": {"epsilon": 0.01, "probability": 0.0, "sigma": 0.0, "mutations": 2}}


def learning_job(tmp, seed: int = 0) -> dict:
    doc = job_doc(tmp, stages=[LEARNING_STAGE], numGenerations=8, perDeviceBatchSize=32, learningRate=2e-2,
                  maxCompletionLength=10, evalListSizes=[1], evalQueries=8, seed=seed)
    doc["spec"]["model"]["lora"] = {"enabled": False}
    doc["spec"]["checkpoint"]["everySteps"] = 1000
    return doc


def learning_curve(history: list[dict]) -> tuple[float, float]:
    rewards = [h["rarl/reward_before_rmo"] for h in history]
    k = 5
    return sum(rewards[:k]) / k, sum(rewards[-k:]) / k


@pytest.mark.slow
def test_reward_rises_and_exported_model_answers(tmp_path):
    proc = run_trainer(write_job(tmp_path, learning_job(tmp_path)), tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    first, last = learning_curve(history)
    assert last > first + 0.3, (first, last, [round(h["rarl/reward_before_rmo"], 2) for h in history])

    # The exported model loads with plain from_pretrained and its greedy answer parses.
    folder = tmp_path / "model" / "model"
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    spec = parse_job(learning_job(tmp_path)).spec
    item = load_items(spec.dataset, "eval").items[0]
    template, what = prompt_for(spec.dataset)
    msgs = build_messages([item], spec.dataset.target, template, "text", what)
    ids = tok(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False), return_tensors="pt",
              add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=10, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert parse_answer(answer, 1).ok, answer
