"""Training dashboards (spec.logging): TensorBoard event files of a real tiny run, uploaded with the checkpoints."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.trainer.conftest import job_doc, run_trainer, run_trainer_in_process, write_job

STAGE = "warmup"


def one_stage_job(tmp: Path, **logging) -> dict:
    """One GRPO stage of 2 steps, an evaluation after step 1, a checkpoint every step."""
    doc = job_doc(tmp, stages=[{"name": STAGE, "steps": 2, "listSizes": [1, 2],
                                "rmo": {"epsilon": 0.5, "probability": 1.0, "sigma": 0.3}}],
                  evalEverySteps=1, loggingSteps=1)
    doc["spec"]["checkpoint"]["everySteps"] = 1
    if logging:
        doc["spec"]["logging"] = logging
    return doc


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag under ``folder`` (its event files) -> [(step, value)], read back by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def event_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("events.out.tfevents.*"))}


@pytest.mark.slow
def test_tensorboard_holds_loss_reward_terms_rmo_and_eval_and_reaches_the_checkpoint_store(tmp_path):
    config = write_job(tmp_path, one_stage_job(tmp_path))  # logging omitted: the default is [tensorboard]
    run_dir = tmp_path / "run"
    proc = run_trainer(config, run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]

    train = scalars(run_dir / "tensorboard" / STAGE)
    for tag in ("train/loss", "train/rewards/regression/mean", "train/rewards/ranking/mean",
                "train/rewards/format/mean", "train/rarl/mutation_rate"):
        assert [step for step, _ in train.get(tag, [])] == [1, 2], (tag, sorted(train))
    rates = [v for _, v in train["train/rarl/mutation_rate"]]
    assert all(0.0 <= r <= 1.0 for r in rates)

    evals = scalars(run_dir / "tensorboard" / "eval")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # baseline (step 0), after step 1 (evalEverySteps) and the end of the stage (step 2): metrics.json's figures
    for key in ("invalid_rate", "n1/acc", "n2/acc"):
        assert [step for step, _ in evals[f"eval/{key}"]] == [0, 1, 2], sorted(evals)
        assert evals[f"eval/{key}"][0][1] == pytest.approx(metrics["baseline"][key])
        assert evals[f"eval/{key}"][2][1] == pytest.approx(metrics["stages"][STAGE]["end"][key])
    assert set(evals) == {f"eval/{k}" for k in metrics["baseline"]}

    # the same event files under <checkpoint.uri>/tensorboard/, next to the step folders
    local = event_files(run_dir / "tensorboard")
    stored = event_files(tmp_path / "ckpt" / "tensorboard")
    assert set(local) == set(stored) and len(local) == 2
    assert local == stored
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.name.startswith("step-"))
    # the checkpoints themselves carry no event files (restores are unchanged)
    assert not list((tmp_path / "ckpt").glob("step-*/**/events.out.tfevents.*"))


@pytest.mark.slow
def test_report_to_none_writes_no_event_files(tmp_path):
    config = write_job(tmp_path, one_stage_job(tmp_path, reportTo=["none"]))
    run_dir = tmp_path / "run"
    proc = run_trainer(config, run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "ckpt").glob("step-*"))  # it did train and checkpoint
    assert not (run_dir / "tensorboard").exists()
    assert not (tmp_path / "ckpt" / "tensorboard").exists()
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_tracker_that_is_not_installed_exits_2_naming_the_field(tmp_path, capsys):
    config = write_job(tmp_path, one_stage_job(tmp_path, reportTo=["tensorboard", "wandb"]))
    proc = run_trainer_in_process(capsys, config, tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "spec.logging.reportTo" in line]
    assert len(lines) == 1 and "wandb" in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").glob("step-*"))


def test_logging_is_not_a_training_setting():
    """Turning dashboards on or off on resume keeps the checkpoints' training settings (config hash)."""
    from rarl.api.settings import TRAINING_FIELDS, config_hash
    from rarl.api.validation import parse_job

    base = job_doc(Path("/tmp/unused"))
    other = job_doc(Path("/tmp/unused"))
    other["spec"]["logging"] = {"reportTo": ["none"], "credentialsSecret": "wandb-key"}
    assert "logging" not in TRAINING_FIELDS
    assert config_hash(parse_job(base).spec) == config_hash(parse_job(other).spec)
    assert parse_job(base).spec.logging.report_to == ["tensorboard"]


@pytest.mark.slow
def test_every_stage_logs_at_the_runs_global_step_like_eval(tmp_path):
    """Issue 28 row 3: each stage's TensorBoard folder counted its own steps (1..n twice), eval/ the run's."""
    doc = job_doc(tmp_path, loggingSteps=1)
    for stage in doc["spec"]["stages"]:
        stage["steps"] = 2
    proc = run_trainer(write_job(tmp_path, doc), tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    board = tmp_path / "run" / "tensorboard"
    first, second = (scalars(board / s["name"])["train/loss"] for s in doc["spec"]["stages"])
    assert [step for step, _ in first] == [1, 2] and [step for step, _ in second] == [3, 4]
    assert [step for step, _ in scalars(board / "eval")["eval/invalid_rate"]][-1] == 4  # one axis for all


@pytest.mark.slow
def test_a_re_export_logs_its_evaluation_at_the_final_step_not_at_zero(tmp_path):
    """Issue 28 row 3: a finished job run again (the re-export) added an eval event at step 0 holding the final
    metrics, beside the real baseline. The first run's event files are compared with the second's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = write_job(tmp_path, one_stage_job(tmp_path))
    assert run_trainer(config, tmp_path / "run").returncode == 0
    board = tmp_path / "run" / "tensorboard" / "eval"
    first = set(board.glob("events.out.tfevents.*"))
    trained = json.loads((tmp_path / "run" / "progress.json").read_text())
    (tmp_path / "run" / "progress.json").unlink()  # as a re-submitted local job starts: no earlier progress
    proc = run_trainer(config, tmp_path / "run")  # resumes from the final checkpoint and exports again
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = set(board.glob("events.out.tfevents.*")) - first
    assert new, "the re-export evaluated the last stage's end again: its events are what this test reads"
    for path in new:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        steps = {e.step for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}
        assert 0 not in steps, (path.name, steps)
    # and the re-export's status is the finished run's (get showed STAGE and REWARD "-")
    again = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert (again["stage"], again["step"], again["reward"]) == (STAGE, 2, trained["reward"]), (again, trained)
