"""The torchrun launcher keeps the exit-code contract (torchrun alone reports every failure as 1)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rarl_trainer.entrypoint import combine
from tests.trainer.conftest import REPO, job_doc, write_job

STAGES = [
    {"name": "warmup", "steps": 4, "listSizes": [1],
     "rewardWeights": {"regression": 1.0, "ranking": 0.0, "format": 0.5},
     "rmo": {"epsilon": 0.01, "probability": 0.3, "sigma": 0.1}},
    {"name": "ranking", "steps": 6, "listSizes": [1, 2], "rmo": {"epsilon": 0.01, "probability": 0.3, "sigma": 0.1}},
]


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


@pytest.mark.parametrize("codes,expected,result", [
    ({0: 0, 1: 0}, 2, 0),
    ({0: 0}, 2, 1),            # a worker vanished without recording
    ({0: 2, 1: 2}, 2, 2),
    ({0: 2}, 2, 2),            # rank 0 found the config error, the other was stopped
    ({0: 3, 1: 3}, 2, 3),
    ({0: 3, 1: 1}, 2, 1),      # a crash beside the interruption is a crash
    ({}, 2, 1),
])
def test_combine(codes, expected, result):
    assert combine(codes, expected) == result


def _launch(config, run_dir, nproc: int = 2) -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "rarl_trainer.entrypoint", "--nproc_per_node", str(nproc), "--master_addr",
            "127.0.0.1", "--master_port", str(port), "-m", "rarl_trainer", "--config", str(config),
            "--run-dir", str(run_dir)]


@pytest.mark.slow
def test_launcher_config_error_exits_2(tmp_path):
    doc = job_doc(tmp_path)
    doc["spec"]["dataset"] = {"format": "jsonl", "modality": "text", "train": str(tmp_path / "nope.jsonl"),
                              "target": {"min": 1, "max": 5}}
    proc = subprocess.run(_launch(write_job(tmp_path, doc), tmp_path / "run"), capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "nope.jsonl" in proc.stderr


@pytest.mark.slow
def test_launcher_sigterm_exits_3_after_checkpoint(tmp_path):
    config = write_job(tmp_path, job_doc(tmp_path, stages=STAGES, perDeviceBatchSize=4))
    proc = subprocess.Popen(_launch(config, tmp_path / "run"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _wait_for_line(proc, "[warmup] step 1/10")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=240)
    assert proc.returncode == 3, err[-3000:]
    assert _complete_steps(tmp_path / "ckpt")


SLOW_WORKER = """
import os, pathlib, signal, sys, time

def on_term(*_):
    time.sleep(3)  # a checkpoint upload that takes a while
    pathlib.Path(os.environ["RARL_EXIT_CODE_DIR"], "rank-" + os.environ["LOCAL_RANK"]).write_text("3")
    sys.exit(3)

signal.signal(signal.SIGTERM, on_term)
print("ready", os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT"), flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.mark.slow
@pytest.mark.parametrize("timeout_env,code", [(None, 3), ("1", 1)])
def test_workers_get_time_to_checkpoint_after_sigterm(tmp_path, timeout_env, code):
    """torchrun kills workers 30 s after SIGTERM unless told otherwise: the launcher's default gives them
    DEFAULT_SHUTDOWN_TIMEOUT_S (a 3 s checkpoint finishes: exit 3); a pod's shorter setting is obeyed (a worker
    still saving after 1 s is killed: exit 1)."""
    from rarl_trainer.entrypoint import DEFAULT_SHUTDOWN_TIMEOUT_S

    script = tmp_path / "worker.py"
    script.write_text(SLOW_WORKER)
    env = {k: v for k, v in os.environ.items() if k != "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"}
    if timeout_env:
        env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] = timeout_env
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "rarl_trainer.entrypoint", "--nproc_per_node", "1",
                             "--master_addr", "127.0.0.1", "--master_port", str(port), str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    line = _wait_for_line(proc, "ready")[-1]
    assert line.split()[-1] == (timeout_env or str(DEFAULT_SHUTDOWN_TIMEOUT_S))
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-3000:]
