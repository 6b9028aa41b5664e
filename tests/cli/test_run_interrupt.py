"""``rarlctl run``'s Ctrl-C and hints (issue 15, items 2 and 4): every command it prints works as printed
(``--home`` included), and what it says after Ctrl-C is the job's real phase; Ctrl-C exits 130.

Local backend, no training: no runner is started, and Ctrl-C arrives while the progress bar waits.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from rarl.backends.local import LocalBackend
from rarl.cli import jobs
from tests.sdk.test_phase_rules import _doc, _set_phase


@pytest.fixture
def job_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RARL_HOME", str(tmp_path / "default-home"))
    monkeypatch.setattr(LocalBackend, "_start_runner", lambda self, files: 0)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_doc()))  # created suspended: a suspend finds it Suspended at once
    return path


def _ctrl_c(monkeypatch, then=None):
    def interrupted(client, name, *args, **kwargs):
        if then is not None:
            then(client)
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "_wait_with_progress", interrupted)


def _printed(out: str, prefix: str) -> list[str]:
    """The rarlctl commands printed after ``prefix`` (each up to two spaces, a ')' or the end of the line)."""
    line = next(line for line in out.splitlines() if prefix in line)
    return [shlex.split(cmd)[1:] for cmd in re.findall(r"rarlctl [^()]+?(?=  |\)|$)", line.split(prefix, 1)[1])]


def test_every_printed_command_works_with_the_home_given(rarlctl, job_file, tmp_path, monkeypatch):
    home = tmp_path / "home"
    _ctrl_c(monkeypatch)
    r = rarlctl("run", "-f", str(job_file), "--home", str(home))
    assert r.code == 130, r.err
    [logs] = _printed(r.out, "logs: ")
    assert logs == ["logs", "idle", "-f", "--home", str(home)]
    (home / "jobs" / "idle" / "logs").mkdir(parents=True)
    (home / "jobs" / "idle" / "logs" / "attempt-1.log").write_text("a line\n")
    assert rarlctl(*[a for a in logs if a != "-f"]).out == "a line\n"  # the job of that home, not $RARL_HOME's
    run_again, resume = _printed(r.out, "suspended; continue with: ")
    assert run_again == ["run", "-f", str(job_file), "--home", str(home)]
    assert resume == ["resume", "idle", "--home", str(home)]
    done = rarlctl(*resume)
    assert done.code == 0 and "rarljob/idle resumed" in done.out, done.err


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_ctrl_c_as_the_job_finishes_says_so(rarlctl, job_file, tmp_path, monkeypatch, phase):
    home = tmp_path / "home"
    _ctrl_c(monkeypatch, then=lambda client: _set_phase(home, "idle", phase))
    r = rarlctl("run", "-f", str(job_file), "--home", str(home))
    assert r.code == 130, r.err
    assert "suspended; continue" not in r.out and "cannot be suspended" not in r.err  # it was not suspended
    assert f"rarljob/idle {phase} before it could be suspended" in r.out, r.out
    assert json.loads((home / "jobs" / "idle" / "state.json").read_text())["phase"] == phase


def test_run_ends_when_the_job_is_suspended_from_elsewhere(rarlctl, job_file, tmp_path):
    """Issue 28 row 6: `rarlctl suspend NAME` from another terminal left `run` waiting forever on "Suspended".

    Here the job is created suspended (runPolicy.suspend), which is what the other terminal's suspend leaves;
    without the fix this call never returns (the test's timeout would fail it)."""
    r = rarlctl("run", "-f", str(job_file), "--home", str(tmp_path / "home"))
    assert r.code == 130, (r.out, r.err)
    [run_again, resume] = _printed(r.out, "was suspended; continue with: ")
    assert run_again == ["run", "-f", str(job_file), "--home", str(tmp_path / "home")]
    assert resume == ["resume", "idle", "--home", str(tmp_path / "home")]
