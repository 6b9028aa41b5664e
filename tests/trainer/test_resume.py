"""Crash safety: SIGKILL mid-stage-2 then --resume auto; damaged checkpoints skipped; SIGTERM exits 3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.trainer.conftest import REPO, job_doc, run_trainer, trainer_cmd, write_job

STAGES = [
    {"name": "warmup", "steps": 4, "listSizes": [1],
     "rewardWeights": {"regression": 1.0, "ranking": 0.0, "format": 0.5},
     "rmo": {"epsilon": 0.01, "probability": 0.3, "sigma": 0.1}},
    {"name": "ranking", "steps": 6, "listSizes": [1, 2], "rmo": {"epsilon": 0.01, "probability": 0.3, "sigma": 0.1}},
]


def _start(config: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(trainer_cmd(config, run_dir, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env=dict(os.environ))


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 240) -> list[str]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return seen
    proc.kill()
    raise AssertionError(f"never saw {needle!r}; stdout so far: {''.join(seen)}\nstderr: {proc.stderr.read()}")


def _complete_steps(ckpt: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in ckpt.glob("step-*") if (p / "manifest.json").is_file())


def _rewards_by_step(history: list[dict]) -> dict[int, float]:
    return {int(h["global_step"]): h["rarl/reward_before_rmo"] for h in history if "rarl/reward_before_rmo" in h}


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_newest_good_checkpoint(tmp_path):
    # Uninterrupted reference run.
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    proc = run_trainer(write_job(ref_dir, job_doc(ref_dir, stages=STAGES)), ref_dir / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = _rewards_by_step(json.loads((ref_dir / "model" / "history.json").read_text()))

    work = tmp_path / "work"
    work.mkdir()
    config = write_job(work, job_doc(work, stages=STAGES))
    proc = _start(config, work / "run")
    _wait_for_line(proc, "[ranking] step 9/10")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    ckpt = work / "ckpt"
    steps = _complete_steps(ckpt)
    assert steps and steps[-1] >= 8, steps
    # Damage the newest checkpoint (bad sha256) and leave a manifest-less folder newer than all.
    newest = ckpt / f"step-{steps[-1]}"
    with open(newest / "rarl_state.json", "a") as fh:
        fh.write(" ")
    (ckpt / "step-99").mkdir()
    (ckpt / "step-99" / "optimizer.pt").write_bytes(b"partial upload")

    proc = run_trainer(config, work / "run", "--resume", "auto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "damaged" in proc.stderr and f"step-{steps[-1]}" in proc.stderr
    resumed_from = steps[-2]
    assert f"resuming from checkpoint step {resumed_from}" in proc.stdout
    assert "[warmup] step 1/10" not in proc.stdout
    progress = json.loads((work / "run" / "progress.json").read_text())
    assert progress["step"] == 10 and progress["model_uri"]
    metrics = json.loads((work / "model" / "metrics.json").read_text())
    assert metrics["baseline"] and metrics["stages"]["ranking"]["end"]
    history = json.loads((work / "model" / "history.json").read_text())
    assert [h["global_step"] for h in history] == list(range(1, 11))
    # Same data, same RMO stream, same sampling RNG: the resumed steps repeat the reference run exactly.
    resumed = _rewards_by_step(history)
    for step in range(resumed_from + 1, 11):
        assert resumed[step] == pytest.approx(reference[step], abs=1e-6), step


@pytest.mark.slow
def test_sigterm_checkpoints_then_exits_3(tmp_path):
    config = write_job(tmp_path, job_doc(tmp_path, stages=STAGES))
    proc = _start(config, tmp_path / "run")
    _wait_for_line(proc, "[warmup] step 1/10")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=240)
    assert proc.returncode == 3, err[-3000:]
    steps = _complete_steps(tmp_path / "ckpt")
    assert steps, err
    assert "interrupted (SIGTERM) after checkpoint" in err
    assert "Traceback" not in err
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["latest_checkpoint"].endswith(f"step-{steps[-1]}")
    # The checkpoint resumes.
    proc = run_trainer(config, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from checkpoint step {steps[-1]}" in proc.stdout
