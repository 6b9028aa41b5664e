"""rarlctl's exit codes for phase rules: unknown phases 2, unreachable or refused 1, wait timeout 124.

Local backend, no training (see tests/sdk/test_phase_rules.py for how the phase is set).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.sdk.test_phase_rules import _doc, _set_phase


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def job_file(tmp_path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_doc()))
    return path


@pytest.fixture
def cli_home(home, monkeypatch) -> Path:
    monkeypatch.setenv("RARL_HOME", str(home))
    return home


def test_wait_exit_codes(rarlctl, cli_home, job_file):
    assert rarlctl("submit", "-f", str(job_file)).code == 0
    r = rarlctl("wait", "idle", "--for", "Done")
    assert r.code == 2 and "--for: 'Done' is not a phase" in r.err
    r = rarlctl("wait", "idle", "--for", "Succeeded", "--timeout", "0.5")
    assert r.code == 124 and "is Suspended, not Succeeded: waited 0.5 s" in r.err
    r = rarlctl("wait", "idle", "--timeout", "-1")
    assert r.code == 2 and "--timeout" in r.err  # a negative timeout is a usage error, not "timed out"
    assert rarlctl("wait", "idle", "--for", "Suspended").code == 0
    _set_phase(cli_home, "idle", "Succeeded")
    for fmt in ("table", "json"):  # the table view honours --for too
        r = rarlctl("wait", "idle", "--for", "Suspended", "-o", fmt)
        assert r.code == 1 and "will never be Suspended" in r.err


def test_suspend_and_resume_of_a_finished_job_exit_1(rarlctl, cli_home, job_file):
    rarlctl("submit", "-f", str(job_file))
    _set_phase(cli_home, "idle", "Succeeded")
    r = rarlctl("suspend", "idle")
    assert r.code == 1 and "a finished job cannot be suspended" in r.err and "suspending" not in r.out
    r = rarlctl("resume", "idle")
    assert r.code == 1 and "a finished job cannot be resumed" in r.err
