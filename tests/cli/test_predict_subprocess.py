"""``rarlctl predict`` runs the model in the trainer's own process (issue 30, item 3b).

The SDK does not import the trainer: ``predict`` starts ``python -P -m rarl_trainer.predict`` with the job
on its stdin and the options passed on, and its exit code and output are predict's. Without the
``[trainer]`` extra it says what to install (exit 2), not ``ModuleNotFoundError``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from rarl.api.validation import parse_job
from rarl.cli import predict_cmd
from tests.sdk.test_phase_rules import QUICKSTART

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def job_and_model(tmp_path) -> tuple[Path, Path]:
    (tmp_path / "job.yaml").write_text(QUICKSTART.read_text())
    (tmp_path / "model").mkdir()
    return tmp_path / "job.yaml", tmp_path / "model"


def test_without_the_trainer_extra_predict_says_what_to_install(job_and_model, tmp_path):
    """The trainer cannot be imported (``sys.modules['rarl_trainer'] = None``, as without the extra)."""
    job, model = job_and_model
    code = ("import sys; sys.modules['rarl_trainer'] = None; "
            "from rarl.cli.main import main; main(sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", code, "--home", str(tmp_path / "home"), "predict", str(model),
                           "-f", str(job)], capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "pip install 'rarl[trainer]'" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_the_extra_is_looked_for_before_anything_starts(rarlctl, job_and_model, monkeypatch):
    job, model = job_and_model
    real = predict_cmd.subprocess.Popen
    started = []
    monkeypatch.setattr(predict_cmd.subprocess, "Popen", lambda *a, **k: started.append(a) or real(*a, **k))
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find_spec(name, *a))
    r = rarlctl("predict", str(model), "-f", str(job))
    assert r.code == 2 and "no module 'torch'" in r.err and "pip install 'rarl[trainer]'" in r.err, r
    assert started == []


class FakeTrainer:
    """``subprocess.Popen`` of the trainer's entry point: records what it was given, answers with ``reply``."""

    calls: ClassVar[list[dict]] = []
    reply: ClassVar[tuple[int, bytes, bytes]] = (0, b"", b"")

    def __init__(self, argv, stdin=None, stdout=None, stderr=None):
        self.argv, self.pipes = argv, (stdout, stderr)
        self.returncode = None

    def communicate(self, data):
        FakeTrainer.calls.append({"argv": self.argv, "stdin": data, "pipes": self.pipes})
        self.returncode, out, err = FakeTrainer.reply
        return (out if self.pipes[0] == subprocess.PIPE else None, err if self.pipes[1] == subprocess.PIPE else None)


@pytest.fixture
def fake_trainer(monkeypatch):
    FakeTrainer.calls = []
    monkeypatch.setattr(predict_cmd.subprocess, "Popen", FakeTrainer)
    return FakeTrainer


def test_options_are_passed_to_the_trainers_entry_point(rarlctl, job_and_model, fake_trainer, tmp_path):
    job, model = job_and_model
    fake_trainer.reply = (0, b'{"id": ["a"], "pred": [1.0], "target": [1.0], "completion": "x"}\n', b"")
    r = rarlctl("predict", str(model), "-f", str(job), "--data", "items.jsonl", "--split", "train", "--list-size",
                "2", "--list-size", "3", "--queries", "4", "--max-new-tokens", "9", "--out", str(tmp_path / "p.jsonl"))
    assert r.code == 0, r
    [call] = fake_trainer.calls
    assert call["argv"][:4] == [sys.executable, "-P", "-m", "rarl_trainer.predict"]
    assert call["argv"][4:] == ["--job", "-", "--model", str(model), "--split", "train", "--data", "items.jsonl",
                                "--list-size", "2", "--list-size", "3", "--queries", "4", "--max-new-tokens", "9",
                                "--out", str(tmp_path / "p.jsonl")]
    sent = yaml.safe_load(call["stdin"])
    assert sent["metadata"]["name"] == "quickstart" and "status" not in sent
    assert parse_job(call["stdin"]).spec == parse_job(QUICKSTART.read_text()).spec  # the job as the file says
    assert r.out == '{"id": ["a"], "pred": [1.0], "target": [1.0], "completion": "x"}\n'


def test_the_trainers_exit_code_and_messages_are_predicts(rarlctl, job_and_model, fake_trainer):
    job, model = job_and_model
    fake_trainer.reply = (2, b"", b"error: data: no such file items.jsonl\n")
    r = rarlctl("--debug", "predict", str(model), "-f", str(job), "--every-item")
    assert (r.code, r.out, r.err) == (2, "", "error: data: no such file items.jsonl\n")
    assert fake_trainer.calls[0]["argv"][-2:] == ["--every-item", "--debug"]
    fake_trainer.reply = (-9, b"", b"")  # killed: as a shell says it
    assert rarlctl("predict", str(model), "-f", str(job)).code == 128 + 9
