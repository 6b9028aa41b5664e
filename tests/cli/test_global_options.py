"""Global options anywhere (kubectl style), refused where they mean nothing, and the verbs' new options.

Local backend, no training: jobs are submitted suspended and their state files set as the runner writes them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from rarl.cli.app import hoist_global_options
from tests.conftest import RARLCTL
from tests.sdk.test_phase_rules import _doc, _set_phase


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RARL_HOME", str(tmp_path / "default-home"))
    return tmp_path / "home"


@pytest.fixture
def job_file(tmp_path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_doc()))
    return path


def test_hoisting_moves_only_global_options_the_verb_does_not_define():
    own = {"get": set(), "predict": {"-o", "--output"}}.get
    assert hoist_global_options(["get", "x", "-n", "ml", "-o", "yaml", "--debug"], lambda v: own(v) or set()) == \
        ["-n", "ml", "-o", "yaml", "--debug", "get", "x"]
    assert hoist_global_options(["--backend", "local", "predict", "m", "-o", "p.jsonl", "--home=h"],
                                lambda v: own(v) or set()) == ["--backend", "local", "--home=h", "predict", "m",
                                                               "-o", "p.jsonl"]
    assert hoist_global_options(["logs", "x", "--", "-n"], lambda v: set()) == ["logs", "x", "--", "-n"]


def test_home_is_global_and_works_after_the_verb(rarlctl, home, job_file):
    assert rarlctl("submit", "-f", str(job_file), "--home", str(home)).code == 0
    listed = json.loads(rarlctl("list", "-o", "json", "--home", str(home)).out)
    assert [d["metadata"]["name"] for d in listed["items"]] == ["idle"]
    assert (home / "jobs" / "idle").is_dir()
    r = rarlctl("list")  # $RARL_HOME, another home: not there
    assert r.code == 0 and "No jobs found" in r.err
    assert rarlctl("--home", str(home), "get", "idle", "-o", "json").code == 0


@pytest.mark.parametrize(("args", "words"), [
    (["get", "idle", "-n", "ml"], "-n/--namespace: only applies to --backend kubernetes"),
    (["--kubeconfig", "/nonexist", "list"], "--kubeconfig: only applies to --backend kubernetes"),
    (["list", "--context", "c"], "--context: only applies to --backend kubernetes"),
    (["--backend", "kubernetes", "--home", "h", "list"], "--home: only the local backend"),
    (["--backend", "kubernetes", "run", "-f", "job.yaml"], "`rarlctl run` trains on this machine"),
    (["-o", "json", "logs", "idle"], "-o/--output: `rarlctl logs` prints no data"),
    (["suspend", "idle", "-o", "yaml"], "-o/--output: `rarlctl suspend` prints no data"),
])
def test_an_option_without_meaning_is_a_usage_error(rarlctl, home, job_file, args, words):
    rarlctl("--home", str(home), "submit", "-f", str(job_file))
    r = rarlctl("--home", str(home), *args)
    assert r.code == 2 and words in r.err, r.err


def test_logs_of_an_earlier_attempt(rarlctl, home, job_file):
    rarlctl("--home", str(home), "submit", "-f", str(job_file))
    folder = home / "jobs" / "idle"
    (folder / "logs").mkdir(exist_ok=True)
    (folder / "logs" / "attempt-1.log").write_text("first attempt\ncrashed\n")
    (folder / "logs" / "attempt-2.log").write_text("second attempt\n")
    state = json.loads((folder / "state.json").read_text())
    state["attempt"] = 2
    (folder / "state.json").write_text(json.dumps(state))
    assert rarlctl("--home", str(home), "logs", "idle").out.splitlines() == ["second attempt"]
    assert rarlctl("--home", str(home), "logs", "idle", "--attempt", "1").out.splitlines() == ["first attempt",
                                                                                              "crashed"]
    r = rarlctl("--home", str(home), "logs", "idle", "--attempt", "3")
    assert r.code == 2 and "attempt: job 'idle' has attempts 1..2; got 3" in r.err


def test_list_watch_prints_a_row_per_change_until_ctrl_c(rarlctl, home, job_file, tmp_path):
    rarlctl("--home", str(home), "submit", "-f", str(job_file))
    proc = subprocess.Popen([str(RARLCTL), "list", "-w", "--interval", "0.2", "--home", str(home)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    try:
        first = [proc.stdout.readline(), proc.stdout.readline()]  # the table: header and the job's row
        time.sleep(1.0)  # some polls that find no change
        _set_phase(home, "idle", "Failed")
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [line.split() for line in [*first, *out.splitlines()] if line.strip()]
    assert lines[0][:2] == ["NAME", "PHASE"] and lines[1][:2] == ["idle", "Suspended"]
    assert [line[:2] for line in lines[2:]] == [["idle", "Failed"]], out  # one row for the one change
    assert proc.returncode == 130, err


def test_shell_completion_completes_verbs(tmp_path):
    env = {**os.environ, "_RARLCTL_COMPLETE": "complete_bash", "COMP_WORDS": "rarlctl su", "COMP_CWORD": "1"}
    proc = subprocess.run([str(RARLCTL)], capture_output=True, text=True, env=env, check=False, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.split() == ["submit", "suspend"]


def test_one_rule_for_o_on_every_verb(rarlctl, home, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"pred": [3], "target": [3]}\n')
    r = rarlctl("-o", "json", "eval", "-p", str(rows))  # the global -o reaches eval (it was ignored)
    assert r.code == 0 and json.loads(r.out)["n1/mae"] == 0.0
    assert json.loads(rarlctl("-o", "json", "crd").out)["kind"] == "CustomResourceDefinition"
    assert rarlctl("crd").out.startswith("# Generated")
    for args in (["-o", "json", "init"], ["fetch", "x", "--dest", "m", "-o", "json"], ["crd", "--reference", "-o", "yaml"],
                 ["-o", "yaml", "predict", "x"], ["predict", "x", "-o", "json"]):  # predict writes to --out FILE
        r = rarlctl(*args)
        assert r.code == 2 and "-o/--output" in r.err, (args, r.err)


def test_kubernetes_options_after_the_verb_reach_the_backend(rarlctl, home, tmp_path):
    missing = tmp_path / "no-kubeconfig"
    r = rarlctl("get", "x", "--backend", "kubernetes", "--kubeconfig", str(missing), "--context", "c", "-n", "ml",
                "-o", "yaml")
    assert r.code == 2 and f"error: cannot load kubeconfig {missing}" in r.err, r.err  # not 'No such option'


def test_debug_adds_a_traceback_and_keeps_the_error_line_and_exit_code(rarlctl, home):
    """--debug (after the verb too) shows the traceback; the error line and the exit code stay the same."""
    r = rarlctl("--home", str(home), "get", "nojob", "--debug")
    assert r.code == 1 and "Traceback" in r.err, r.err
    assert r.err.rstrip().splitlines()[-1] == f"error: no local job named 'nojob' in {home} (see: rarlctl list)"
    assert rarlctl("--home", str(home), "get", "nojob").err.count("\n") == 1  # without it: the line alone


def test_minus_n_after_predict_is_the_namespace_not_a_list_size(rarlctl, tmp_path):
    """Issue 28 row 5: `predict NAME -n ml` read ml as a list size; -n means the namespace on every verb."""
    r = rarlctl("predict", "x", "-n", "ml")  # the local backend has no namespaces: refused as such
    assert r.code == 2 and "-n/--namespace: only applies to --backend kubernetes" in r.err, r.err
