"""The KL reference of a fully fine-tuned GRPO stage after the first is the policy that stage started from.

With LoRA, TRL's "ref" adapter is a copy of the adapter as the stage starts; with full fine-tuning TRL
builds a second model from ``model.base``. These tests run a real two-stage job (tiny LM, real TRL,
``beta`` > 0, a checkpoint every step) and compare weights by hash: the reference model that stage 2's
checkpoints carry equals the policy of the stage-boundary checkpoint, not the base model. Exact resume
against that reference (kill mid stage 2) is covered by test_resume_exact.py's full fine-tuning variant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.conftest import job_doc, run_trainer, write_job
from tests.trainer.test_resume_exact import tensor_digest

pytestmark = pytest.mark.slow  # a real trainer process


def _full_ft_job(tmp: Path) -> dict:
    doc = job_doc(tmp, beta=0.1, learningRate=5e-3)
    spec = doc["spec"]
    spec["model"]["lora"] = {"enabled": False}
    for stage in spec["stages"]:
        stage["steps"] = 2
    spec["checkpoint"] = {"uri": str(tmp / "ckpt"), "everySteps": 1, "keep": 10}
    return doc


def test_full_fine_tuning_stage_two_trains_against_the_stage_one_policy(tmp_path):
    from rarl.api.validation import parse_job
    from rarl_trainer.models import load_model
    from rarl_trainer.weights import REFERENCE_FILE, WEIGHTS_FILE, save_training_weights

    doc = _full_ft_job(tmp_path)
    proc = run_trainer(write_job(tmp_path, doc), tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "ckpt"
    spec = parse_job(doc).spec
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    save_training_weights(load_model(spec.model, spec.storage, seed=spec.grpo.seed).model, base_dir)
    base = tensor_digest(base_dir / WEIGHTS_FILE)

    boundary = tensor_digest(ckpt / "step-2" / WEIGHTS_FILE)  # the policy stage 1 ended with
    assert boundary != base, "stage 1 did not change the weights: the test could not tell the references apart"
    # stage 1's reference is the base model, rebuilt from model.base: its checkpoints do not carry it
    assert not (ckpt / "step-1" / REFERENCE_FILE).exists()
    assert not (ckpt / "step-2" / REFERENCE_FILE).exists()
    for step in (3, 4):
        assert tensor_digest(ckpt / f"step-{step}" / REFERENCE_FILE) == boundary, step
    # the reference stays frozen while the policy moves on
    assert tensor_digest(ckpt / "step-4" / WEIGHTS_FILE) != boundary
