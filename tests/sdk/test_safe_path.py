"""Every Python process the local backend starts runs with ``-P`` (issue 29, row "-P").

``python -m`` puts its working folder first on the import path: the local trainer runs in the folder the job was
submitted from, so a stray ``yaml.py`` or ``rarl_trainer.py`` there ran instead of the real module. Here such
modules are planted and each process is started exactly as the backend starts it (its command line, environment
and working folder); the planted modules write a marker when imported, and the real trainer's answer to a bad
config (exit 2) shows the real one ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rarl import Client
from rarl.backends import supervisor as supervisor_mod
from rarl.backends.local import LocalBackend
from rarl.backends.local_state import JobFiles
from tests.sdk.test_phase_rules import _doc

pytestmark = pytest.mark.slow  # starts the local runner and the trainer (quickly: they stop at a bad config)

PLANTED = ("yaml", "rarl_trainer")


def _plant(folder: Path) -> Path:
    """``yaml.py`` and ``rarl_trainer.py`` in ``folder`` that leave a marker file when imported."""
    marker = folder / "planted-module-imported"
    for module in PLANTED:
        (folder / f"{module}.py").write_text(
            f"with open({str(marker)!r}, 'a') as f:\n    f.write({module!r} + '\\n')\n")
    return marker


def _wait_pid(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the local runner (pid {pid}) did not stop within {timeout:g} s")


def _submitted(tmp_path: Path, monkeypatch, gpus: int) -> tuple[JobFiles, Path]:
    """A job submitted from a folder holding the planted modules (the runner is started by the test)."""
    submit_dir = tmp_path / "submit-folder"
    submit_dir.mkdir()
    monkeypatch.chdir(submit_dir)
    marker = _plant(submit_dir)
    monkeypatch.setattr(LocalBackend, "_start_runner", lambda self, files: 0)
    if gpus:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in range(gpus)))  # the submit's GPU check
    client = Client(LocalBackend(tmp_path / "home"))
    doc = _doc("safe-path")
    doc["spec"]["runPolicy"] = {"maxRestarts": 0}
    doc["spec"]["resources"] = {"gpusPerNode": gpus}
    client.submit(doc)
    return JobFiles(client.backend.jobs_dir / "safe-path"), marker


def test_the_local_runner_does_not_import_modules_from_its_folder(tmp_path, monkeypatch):
    """Issue 29, -P: the runner (``python -m rarl.backends.supervisor``) had its working folder first on the path."""
    files, _ = _submitted(tmp_path, monkeypatch, gpus=0)
    marker = _plant(files.root)  # the runner's working folder
    files.config.write_text("kind: Nope\n")  # the runner stops at once (after importing yaml), no trainer starts
    monkeypatch.undo()  # the real _start_runner
    pid = LocalBackend(tmp_path / "home")._start_runner(files)
    assert _wait_pid(pid, timeout=120) != 0
    assert "must be 'RARLJob'" in (files.root / "runner.log").read_text()  # the real yaml read the config
    assert not marker.exists(), marker.read_text()


@pytest.mark.parametrize("gpus", [0, 2], ids=["one-process", "torchrun"])
def test_the_trainer_does_not_import_modules_from_the_submit_folder(tmp_path, monkeypatch, gpus):
    """Issue 29, -P: a stray ``yaml.py``/``rarl_trainer.py`` in the folder a job was submitted from ran in the
    trainer (and, under torchrun, in every worker)."""
    files, marker = _submitted(tmp_path, monkeypatch, gpus)
    started: list[tuple[list[str], dict[str, str], str]] = []

    class Capture:
        """Stands in for the trainer process: records how the runner starts it, then "exits 0"."""

        def __init__(self, args, *, cwd=None, env=None, **_):
            started.append((list(args), dict(env), cwd))
            self.pid = 0

        def poll(self):
            return 0

        def wait(self):
            return 0

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with monkeypatch.context() as m:
            m.setattr(supervisor_mod.subprocess, "Popen", Capture)
            assert supervisor_mod.Supervisor(files.root).run() == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    [(args, env, cwd)] = started
    assert Path(cwd) == Path.cwd() and (Path(cwd) / "yaml.py").exists()
    files.config.write_text("kind: Nope\n")  # the real trainer answers with exit 2 before any training
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert not marker.exists(), f"imported: {marker.read_text()}"
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "must be 'RARLJob'" in proc.stderr
