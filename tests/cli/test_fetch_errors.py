"""rarlctl fetch: every --dest problem is one line naming --dest (exit 2), a job without a model exits 1,
and the progress bar is drawn only once the download starts, with its total (issue 15, item 6).

Local backend, no training: the job's phase and model location are set in its state.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rarl.storage import upload_tree
from tests.sdk.test_phase_rules import _doc, _set_phase


@pytest.fixture
def cli_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("RARL_HOME", str(home))
    return home


@pytest.fixture
def succeeded(rarlctl, cli_home, tmp_path) -> str:
    """A Succeeded local job named 'idle' whose model (with its manifest) is at tmp_path/model-out."""
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(_doc()))
    assert rarlctl("submit", "-f", str(job_file)).code == 0
    src = tmp_path / "model-src"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"w" * 5000)
    (src / "REPORT.md").write_text("# report\n")
    upload_tree(src, str(tmp_path / "model-out"))
    state_path = cli_home / "jobs" / "idle" / "state.json"
    state = json.loads(state_path.read_text())
    state.update(phase="Succeeded", modelURI=str(tmp_path / "model-out"))
    state_path.write_text(json.dumps(state))
    return "idle"


def _one_line_no_bar(r) -> None:
    assert r.err.count("\n") == 1 and r.err.startswith("error: "), r.err
    assert "Traceback" not in r.err + r.out and "Error:" not in r.err  # no raw FileExistsError etc.
    assert "fetching" not in r.out + r.err and "bytes" not in r.out + r.err  # no bar drawn


def test_dest_errors_are_one_line_exit_2(rarlctl, succeeded, tmp_path, monkeypatch):
    r = rarlctl("fetch", succeeded, "--dest", "")
    assert r.code == 2 and "--dest is empty" in r.err
    _one_line_no_bar(r)
    assert not (tmp_path / "weights.bin").exists()  # nothing written into the current folder

    afile = tmp_path / "afile"
    afile.write_text("x")
    r = rarlctl("fetch", succeeded, "--dest", str(afile))
    assert r.code == 2 and f"--dest {afile}: exists and is not a folder" in r.err
    _one_line_no_bar(r)
    assert afile.read_text() == "x"

    r = rarlctl("fetch", succeeded, "--dest", str(afile / "sub"))
    assert r.code == 2 and f"--dest {afile / 'sub'}: {afile} is not a folder" in r.err
    _one_line_no_bar(r)

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # as root the mode bits do not deny anything: pretend the folder is read-only for this check
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode, **kw))
    r = rarlctl("fetch", succeeded, "--dest", str(locked / "model"))
    assert r.code == 2 and f"--dest {locked / 'model'}: permission denied (in {locked})" in r.err
    _one_line_no_bar(r)
    assert not (locked / "model").exists()


def test_unknown_job_exit_1_without_a_bar(rarlctl, cli_home, tmp_path):
    r = rarlctl("fetch", "nosuchjob", "--dest", str(tmp_path / "m"))
    assert r.code == 1 and "no local job named 'nosuchjob'" in r.err
    _one_line_no_bar(r)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("phase", ["Failed", "Running"])
def test_job_without_a_model_exit_1(rarlctl, succeeded, cli_home, tmp_path, phase):
    state_path = cli_home / "jobs" / succeeded / "state.json"
    state = json.loads(state_path.read_text())
    state.pop("modelURI")
    runner = None
    if phase == "Running":  # a live runner keeps the job Running (its command line names the supervisor)
        runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "rarl.backends.supervisor"])
    state["runnerPid"] = runner.pid if runner else None
    state_path.write_text(json.dumps(state))
    _set_phase(cli_home, succeeded, phase)
    try:
        r = rarlctl("fetch", succeeded, "--dest", str(tmp_path / "m"))
    finally:
        if runner:
            runner.kill()
            runner.wait()
    assert r.code == 1 and f"job 'idle' has no exported model yet (phase {phase})" in r.err
    _one_line_no_bar(r)
    assert not (tmp_path / "m").exists()


def test_fetch_draws_a_bar_with_its_total(rarlctl, succeeded, tmp_path):
    r = rarlctl("fetch", succeeded, "--dest", str(tmp_path / "m"))
    assert r.code == 0, r.err
    assert (tmp_path / "m" / "weights.bin").read_bytes() == b"w" * 5000
    bar = [line for line in r.out.splitlines() if "fetching idle" in line]
    assert bar and "?" not in bar[-1], r.out  # the total is known: no "0/? bytes"
    assert "5.0/5.0 kB" in bar[-1], bar
    assert "verified and saved in" in r.out
