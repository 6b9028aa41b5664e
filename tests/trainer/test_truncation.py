"""grpo.maxPromptLength: left truncation that keeps vision tokens, in rollouts and in evaluation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rarl_trainer.truncation import (
    kept_positions,
    truncate_padded_batch,
    truncate_token_lists,
    vision_token_ids,
)

IMG = 5  # the tiny VLM's image placeholder id
VISION = frozenset({3, 4, 5, 6})


def test_short_prompts_and_no_limit_are_untouched():
    assert kept_positions([1, 2, 3], 3) == [0, 1, 2]
    assert kept_positions([1, 2, 3], None) == [0, 1, 2]
    ids, fields, cut = truncate_token_lists([[1, 2], [3]], {"x": [[0, 0], [1]]}, 2)
    assert (ids, fields, cut) == ([[1, 2], [3]], {"x": [[0, 0], [1]]}, 0)


def test_left_truncation_keeps_the_end_of_the_prompt():
    assert kept_positions([10, 11, 12, 13, 14], 2) == [3, 4]


def test_vision_tokens_are_kept_and_text_fills_the_rest_from_the_right():
    ids = [1, 9, 3, IMG, IMG, 4, 7, 8, 2]
    keep = kept_positions(ids, 6, VISION)
    assert [ids[i] for i in keep] == [3, IMG, IMG, 4, 8, 2]
    # vision tokens alone over the limit: all kept, nothing else
    assert [ids[i] for i in kept_positions(ids, 2, VISION)] == [3, IMG, IMG, 4]


@given(st.lists(st.integers(0, 12), max_size=40), st.integers(0, 45))
def test_kept_positions_properties(ids, limit):
    keep = kept_positions(ids, limit, VISION)
    n_vision = sum(t in VISION for t in ids)
    assert keep == sorted(set(keep))  # order preserved, no duplicates
    assert len(keep) == (len(ids) if len(ids) <= limit else max(limit, n_vision))
    assert sum(ids[i] in VISION for i in keep) == n_vision
    dropped = [i for i in range(len(ids)) if i not in set(keep)]
    kept_text = [i for i in keep if ids[i] not in VISION]
    assert not dropped or not kept_text or max(dropped) < min(kept_text)  # text is cut from the left only


def test_per_token_fields_are_cut_at_the_same_positions():
    ids = [[1, 3, IMG, 4, 7, 8, 2], [7, 2]]
    fields = {"mm_token_type_ids": [[0, 0, 1, 0, 0, 0, 0], [0, 0]], "image_grid_thw": [[1, 2, 2]],
              "pixel_values": torch.zeros(4, 3)}
    new_ids, new_fields, cut = truncate_token_lists(ids, fields, 4, VISION)
    assert cut == 1
    assert new_ids == [[3, IMG, 4, 2], [7, 2]]
    assert new_fields["mm_token_type_ids"] == [[0, 1, 0, 0], [0, 0]]
    assert new_fields["image_grid_thw"] == [[1, 2, 2]] and new_fields["pixel_values"] is fields["pixel_values"]


def test_padded_batch_equals_the_token_list_rule():
    rows = [[1, 3, IMG, IMG, 4, 7, 8, 2], [7, 8, 2], [9, 9, 9, 9, 9, 1]]
    width = max(map(len, rows))
    pad = 0
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    types = (ids == IMG).long()
    out, cut = truncate_padded_batch({"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": types,
                                      "pixel_values": torch.ones(2, 3)}, 5, VISION, pad)
    expected, _, want_cut = truncate_token_lists(rows, {}, 5, VISION)
    assert cut == want_cut == 2
    got = [r[m.bool()].tolist() for r, m in zip(out["input_ids"], out["attention_mask"], strict=True)]
    assert got == expected
    assert out["input_ids"].shape[1] == max(map(len, expected))
    assert torch.equal(out["mm_token_type_ids"], (out["input_ids"] == IMG).long() * out["attention_mask"])
    assert out["pixel_values"] is not None and torch.equal(out["pixel_values"], torch.ones(2, 3))
    # under the limit: the same objects back
    same, none_cut = truncate_padded_batch({"input_ids": ids, "attention_mask": mask}, 8, VISION, pad)
    assert none_cut == 0 and same["input_ids"] is ids


def test_vision_token_ids_of_the_tiny_models():
    from transformers import AutoConfig

    from rarl_trainer import builtin_models

    assert vision_token_ids(AutoConfig.from_pretrained(builtin_models.builtin_path(builtin_models.TINY_VLM))) == VISION
    assert vision_token_ids(AutoConfig.from_pretrained(builtin_models.builtin_path(builtin_models.TINY_LM))) == frozenset()


def _trainer(tmp_path, base, modality, limit):
    from tests.trainer.conftest import first_stage_trainer, job_doc

    stages = [{"name": "s1", "steps": 1, "listSizes": [2], "rmo": {"enabled": False}}]
    doc = job_doc(tmp_path, base=base, modality=modality, stages=stages, maxPromptLength=limit, beta=0.04)
    return first_stage_trainer(tmp_path, doc)


@pytest.mark.parametrize("base,modality", [("builtin:tiny-lm", "text"), ("builtin:tiny-qwen2.5-vl", "image")])
def test_rollouts_and_eval_use_truncated_prompts(tmp_path, base, modality):
    """A GRPO step on prompts cut to the limit: generation, log-probs and loss all see the cut prompt (with
    every image token, so the image features still line up), and evaluation cuts its prompts the same way."""
    from rarl_trainer.evaluation import generate_answers

    whole_run, whole = _trainer(tmp_path / "whole", base, modality, None)
    batch = next(iter(whole.get_train_dataloader()))
    whole_inputs = whole._generate_and_score_completions(batch)
    full_len = int(whole_inputs["prompt_mask"].sum(1).max())
    n_vision = int((whole_inputs["prompt_ids"] == IMG).sum(1).max())
    limit = max(n_vision + 4, full_len // 2)
    assert limit < full_len

    training, trainer = _trainer(tmp_path / "cut", base, modality, limit)
    widths = []
    orig_generate = type(trainer.model).generate

    def spy(self, *a, **k):
        widths.append(int(k["attention_mask"].sum(1).max()))
        return orig_generate(self, *a, **k)

    type(trainer.model).generate = spy
    try:
        inputs = trainer._generate_and_score_completions(batch)
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        table = training.evaluator.table
        answers = generate_answers(training.loaded, table, [0, 1], 4, max_prompt_length=limit)
    finally:
        type(trainer.model).generate = orig_generate
    assert torch.isfinite(loss)
    assert widths[0] == limit  # the rollout prompts
    assert int(inputs["prompt_mask"].sum(1).max()) == limit  # the loss sees the same prompts
    assert trainer._metrics["train"]["rarl/truncated_prompts"][-1] == 1.0
    if modality == "image":
        assert int((inputs["prompt_ids"] == IMG).sum(1).max()) == n_vision
        sampled = inputs["completion_ids"][inputs["completion_mask"].bool()].tolist()
        assert len(sampled) > 50 and not set(sampled) & VISION  # rollouts never sample vision placeholders
    assert widths[1] <= limit and len(answers) == 2  # evaluation
    assert whole_run.ctx.spec.grpo.max_prompt_length is None and "rarl/truncated_prompts" not in whole._metrics["train"]
