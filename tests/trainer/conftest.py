"""Trainer tests: tiny offline models cached once per session, jobs written into tmp folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def rarl_cache(tmp_path_factory):
    """One builtin-model cache for the session (subprocesses inherit it through the environment)."""
    if "RARL_TEST_CACHE_DIR" in os.environ:
        path = Path(os.environ["RARL_TEST_CACHE_DIR"])
    else:
        path = tmp_path_factory.mktemp("rarl-cache")
    old = os.environ.get("RARL_CACHE_DIR")
    os.environ["RARL_CACHE_DIR"] = str(path)
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield path
    if old is None:
        os.environ.pop("RARL_CACHE_DIR", None)
    else:
        os.environ["RARL_CACHE_DIR"] = old


def job_doc(tmp: Path, *, base: str = "builtin:tiny-lm", modality: str = "text", stages=None, **grpo) -> dict:
    """A small two-stage job on the synthetic counting task, storing under ``tmp``."""
    stages = stages or [
        {"name": "warmup", "steps": 3, "listSizes": [1],
         "rewardWeights": {"regression": 1.0, "ranking": 0.0, "format": 0.5},
         "rmo": {"epsilon": 0.01, "probability": 0.1, "sigma": 0.1}},
        {"name": "ranking", "steps": 3, "listSizes": [1, 2],
         "rmo": {"epsilon": 0.01, "probability": 0.1, "sigma": 0.1}},
    ]
    g = {"numGenerations": 4, "perDeviceBatchSize": 8, "learningRate": 5.0e-4, "beta": 0.0,
         "maxCompletionLength": 16, "evalListSizes": [1, 2], "evalQueries": 4, "seed": 0}
    g.update(grpo)
    return {
        "apiVersion": "rarl.dev/v1alpha1",
        "kind": "RARLJob",
        "metadata": {"name": "t"},
        "spec": {
            "model": {"base": base, "dtype": "float32", "lora": {"r": 8, "alpha": 16}},
            "dataset": {"format": "synthetic", "modality": modality,
                        "synthetic": {"trainSize": 64, "evalSize": 16, "seed": 0, "imageSize": 32},
                        "target": {"min": 1, "max": 5, "unit": "shapes", "precision": 1}},
            "reward": {"delta": 2.0},
            "stages": stages,
            "grpo": g,
            "checkpoint": {"uri": str(tmp / "ckpt"), "everySteps": 2, "keep": 3},
            "output": {"uri": str(tmp / "model")},
        },
    }


def write_job(tmp: Path, doc: dict) -> Path:
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def trainer_cmd(config: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rarl_trainer", "--config", str(config), "--run-dir", str(run_dir), *extra]


def run_trainer(config: Path, run_dir: Path, *extra: str, timeout: float = 300, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(trainer_cmd(config, run_dir, *extra), check=False, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=full_env)


def run_trainer_in_process(capsys, config: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m rarl_trainer``'s ``main`` called in this process: its exit code and what it printed.

    For runs that end before training (a refused configuration): the same code path as the process without
    its start-up cost (test_cli.py keeps one real process for the entry point). The stop handlers the trainer
    installs are put back afterwards, so they do not outlive the call in the test worker.
    """
    from rarl_trainer import cli

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    capsys.readouterr()
    try:
        code = cli.main(["--config", str(config), "--run-dir", str(run_dir), *extra])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["rarl_trainer"], int(code), out.out, out.err)


def first_stage_trainer(tmp: Path, doc: dict):
    """(loop.Training, the trainer of the job's first stage) built in-process, ready for a manual step."""
    from rarl.api.validation import parse_job
    from rarl_trainer.config import DistInfo, stage_plan
    from rarl_trainer.loop import Run

    run = Run(parse_job(doc), tmp / "run", resume="never", dist=DistInfo())
    training = run.set_up()
    trainer = training.make_trainer(stage_plan(run.spec)[0]).trainer
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() in real runs
    return training, trainer
