"""Entrypoint exit codes: 2 with one clear message (no traceback) for bad configuration or data.

One test starts the real ``python -m rarl_trainer`` process (exit code, stderr, termination log); the others
call its ``main`` in-process (``run_trainer_in_process``), the same code path without a process start.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.conftest import job_doc, run_trainer, run_trainer_in_process, write_job


def _assert_config_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.mark.slow
def test_invalid_spec_exits_2(tmp_path):
    doc = job_doc(tmp_path)
    doc["spec"]["grpo"]["numGenerations"] = 1
    doc["spec"]["stages"][0]["name"] = "Bad Name"
    term = tmp_path / "termination-log"
    term.write_text("")
    proc = run_trainer(write_job(tmp_path, doc), tmp_path / "run", env={"RARL_TERMINATION_LOG": str(term)})
    _assert_config_error(proc, "numGenerations", "Bad Name")
    assert "numGenerations" in term.read_text()


def test_unreadable_config_exits_2(tmp_path, capsys):
    proc = run_trainer_in_process(capsys, tmp_path / "missing.yaml", tmp_path / "run")
    _assert_config_error(proc, "missing.yaml")
    (tmp_path / "bad.yaml").write_text("spec: [unclosed\n")
    proc = run_trainer_in_process(capsys, tmp_path / "bad.yaml", tmp_path / "run")
    _assert_config_error(proc, "YAML")


def test_bad_data_exits_2(tmp_path, capsys):
    doc = job_doc(tmp_path)
    doc["spec"]["dataset"] = {"format": "jsonl", "modality": "text", "train": str(tmp_path / "nope.jsonl"),
                              "target": {"min": 1, "max": 5}}
    proc = run_trainer_in_process(capsys, write_job(tmp_path, doc), tmp_path / "run")
    _assert_config_error(proc, "nope.jsonl")


def test_missing_model_folder_exits_2(tmp_path, capsys):
    doc = job_doc(tmp_path)
    doc["spec"]["model"]["base"] = str(tmp_path / "no-model")
    proc = run_trainer_in_process(capsys, write_job(tmp_path, doc), tmp_path / "run")
    _assert_config_error(proc, "no-model")


def test_text_model_on_image_data_exits_2(tmp_path, capsys):
    doc = job_doc(tmp_path, base="builtin:tiny-lm", modality="image")
    proc = run_trainer_in_process(capsys, write_job(tmp_path, doc), tmp_path / "run")
    _assert_config_error(proc, "text model")


def test_batch_not_multiple_of_group_exits_2(tmp_path, capsys):
    doc = job_doc(tmp_path, perDeviceBatchSize=6)
    proc = run_trainer_in_process(capsys, write_job(tmp_path, doc), tmp_path / "run")
    _assert_config_error(proc, "multiple of numGenerations")
    assert not Path(tmp_path / "model").exists()


def test_the_batch_rule_is_checked_again_for_the_real_world_size(tmp_path):
    """A local run may get fewer processes than spec.resources asks for (fewer GPUs here)."""
    from rarl.api.validation import parse_job
    from rarl_trainer.config import ConfigError
    from rarl_trainer.grpo import prompts_per_step

    doc = job_doc(tmp_path, perDeviceBatchSize=2)
    doc["spec"]["grpo"]["numGenerations"] = 4
    doc["spec"]["resources"] = {"nodes": 1, "gpusPerNode": 2}  # 2 x 2 = 4: one group per step
    spec = parse_job(doc).spec
    assert prompts_per_step(spec, world_size=2) == 1
    with pytest.raises(ConfigError, match=r"processes \(1\) = 2 completions per step is not a multiple"):
        prompts_per_step(spec, world_size=1)
