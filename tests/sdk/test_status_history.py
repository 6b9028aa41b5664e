"""A local job's history is true (issue 15, item 7): every transition is recorded at the time it happened,
in an append-only event list that survives suspend and resume; messages carry no doubled prefix and a
suspend names the signal that stopped the trainer.

The real supervisor runs in-process here with a stand-in trainer (a short Python command), so each
transition happens for real and the test stays fast; one slow test runs the real trainer.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import pytest

from rarl import Client
from rarl.backends import supervisor as supervisor_mod
from rarl.backends.local import LocalBackend
from rarl.backends.local_state import JobFiles, read_state
from tests.sdk.test_local_training import tiny_job
from tests.sdk.test_phase_rules import _doc
from tests.support.polling import wait_for
from tests.support.supervise import run_supervisor

ROOT = Path(__file__).resolve().parents[2]


def _t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture
def client(tmp_path, monkeypatch) -> Client:
    monkeypatch.chdir(tmp_path)
    backend = LocalBackend(tmp_path / "home")
    monkeypatch.setattr(LocalBackend, "_start_runner", lambda self, files: 0)  # the test runs the supervisor
    return Client(backend)


def _submit(client: Client, name: str = "hist") -> JobFiles:
    doc = _doc(name)
    doc["spec"]["runPolicy"] = {"maxRestarts": 0}
    client.submit(doc)
    return JobFiles(client.backend.jobs_dir / name)


def _supervise(files: JobFiles, monkeypatch, code: str, sigterm_after: float | None = None,
               sigterm_when=None) -> None:
    """Run the real supervisor in-process over a stand-in trainer (``python -c code``)."""
    monkeypatch.setattr(supervisor_mod, "trainer_command", lambda f, gpus: [sys.executable, "-c", code])
    run_supervisor(files, sigterm_after, sigterm_when)


def test_events_are_true_through_suspend_resume_and_success(client, monkeypatch):
    files = _submit(client)
    # attempt 1: the trainer checkpoints on SIGTERM and exits 3 (suspended after a checkpoint)
    trap = ("import os, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
            "time.sleep(1.2)\n"  # a second later than its start (the events' times have seconds)
            "open(os.environ['RARL_TERMINATION_LOG'] + '.ready', 'w').close()\n"
            "time.sleep(30)")
    ready = files.termination_log.with_name("termination-log.ready")
    _supervise(files, monkeypatch, trap, sigterm_when=ready.exists)
    assert client.get("hist").status.phase == "Suspended"
    client.resume("hist")
    # the operator's conditions: Suspended turns False (reason Resumed); no condition type of its own
    conditions = {c.type: c for c in client.get("hist").status.conditions}
    assert "Resumed" not in conditions
    assert (conditions["Suspended"].status, conditions["Suspended"].reason) == ("False", "Resumed")
    # attempt 2 runs a while, then succeeds
    _supervise(files, monkeypatch, "import time; time.sleep(1.5)")
    assert client.get("hist").status.phase == "Succeeded"

    events = client.events("hist")
    model = client.get("hist").spec.output.uri
    assert [(e.reason, e.message) for e in events] == [  # the operator's words (tests/sdk/test_one_lifecycle.py)
        ("Created", "created attempt 1 (1 node(s))"),
        ("Running", "attempt 1: 1/1 node(s) running"),
        ("Suspended", "attempt 1 stopped; the trainer checkpoints on SIGTERM"),
        ("Resumed", "resumed as attempt 2"),
        ("Running", "attempt 2: 1/1 node(s) running"),
        ("Succeeded", f"attempt 2 completed; model at {model}"),
    ]
    times = [_t(e.time) for e in events]
    assert times == sorted(times)
    done = client.get("hist")  # issue 28 row 10, as in the real run below
    running = next(c for c in done.status.conditions if c.type == "Running")
    assert (running.status, running.reason) == ("False", "Succeeded")
    assert _t(done.metadata.model_extra["creationTimestamp"]) < _t(done.status.start_time)  # AGE survives resume
    # issue 28 row 10: the ended Running condition says why (as the operator's does), and the job's creation
    # time (list's AGE) is when it was submitted, not when it was last resumed
    done = client.get("hist")
    running = next(c for c in done.status.conditions if c.type == "Running")
    assert (running.status, running.reason, running.message) == ("False", "Succeeded", events[-1].message)
    created = done.metadata.model_extra["creationTimestamp"]
    assert _t(created) <= _t(events[0].time) and _t(created) < _t(done.status.start_time)
    started1, suspended, started2, succeeded = times[1], times[2], times[4], times[5]
    assert started1 < suspended and started2 < succeeded  # not the end's time: each when it happened
    assert all(e.type == "Normal" for e in events)
    # the state file holds the same list, so a later reader (another rarlctl) sees it too
    assert [e["message"] for e in read_state(files)["events"]] == [e.message for e in events]


def test_suspend_of_a_trainer_killed_by_sigterm_names_the_signal(client, monkeypatch):
    files = _submit(client)
    _supervise(files, monkeypatch, "import time; time.sleep(30)", sigterm_after=1.0)  # default action: killed
    job = client.get("hist")
    assert job.status.phase == "Suspended"
    message = next(c.message for c in job.status.conditions if c.type == "Suspended")
    assert message == "attempt 1 suspended (trainer killed by SIGTERM)"
    assert "-15" not in message


def test_a_configuration_error_reads_once(client, monkeypatch, rarlctl_proc):
    files = _submit(client)
    code = ("import os, sys\n"
            "open(os.environ['RARL_TERMINATION_LOG'], 'w').write('dataset: spec.dataset.train: no such file')\n"
            "sys.exit(2)")
    _supervise(files, monkeypatch, code)
    job = client.get("hist")
    assert job.status.phase == "Failed"
    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert failed.reason == "ConfigurationError" and failed.message == "dataset: spec.dataset.train: no such file"
    assert [e.type for e in client.events("hist")][-1] == "Warning"
    r = rarlctl_proc("wait", "hist", env={"RARL_HOME": str(client.backend.home)})
    assert r.code == 1
    assert "rarljob/hist Failed: ConfigurationError: dataset: spec.dataset.train: no such file" in r.out
    assert "Failed: Failed" not in r.out + r.err


def test_a_crash_names_the_signal_and_the_budget(client, monkeypatch):
    files = _submit(client)
    _supervise(files, monkeypatch, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    failed = next(c for c in client.get("hist").status.conditions if c.type == "Failed")
    assert failed.reason == "RestartBudgetExhausted"
    assert failed.message.startswith("attempt 1: trainer crashed (killed by SIGKILL)")
    assert failed.message.endswith("restart budget exhausted (maxRestarts=0)")


# --------------------------------------------------------------------------- the real trainer

@pytest.mark.slow
def test_real_run_suspend_resume_keeps_its_history(tmp_path):
    client = Client(LocalBackend(tmp_path / "home"))
    client.submit(tiny_job(tmp_path, "real"))
    log1 = client.backend.jobs_dir / "real" / "logs" / "attempt-1.log"
    wait_for(lambda: log1.exists() and "] step " in log1.read_text(), timeout=240, interval=0.5, what="training")
    client.suspend("real")
    job = client.wait("real", until={"Suspended", "Failed", "Succeeded"}, timeout=180, poll_interval=0.5)
    assert job.status.phase == "Suspended", job.status.conditions
    suspended_msg = next(c.message for c in job.status.conditions if c.type == "Suspended")
    assert suspended_msg == "attempt 1 suspended after a checkpoint"
    client.resume("real")
    job = client.wait("real", timeout=600, poll_interval=1.0)
    assert job.status.phase == "Succeeded", job.status.conditions

    events = client.events("real")
    messages = [e.message for e in events]
    assert messages[:3] == ["created attempt 1 (1 node(s))", "attempt 1: 1/1 node(s) running",
                            "attempt 1 stopped; the trainer checkpoints on SIGTERM"]
    model = client.get("real").spec.output.uri
    assert "attempt 2: 1/1 node(s) running" in messages and messages[-1] == f"attempt 2 completed; model at {model}"
    times = [_t(e.time) for e in events]
    assert times == sorted(times)
    # issue 28 row 10: the ended Running condition says why (as the operator's does), and the job's creation
    # time (list's AGE) is when it was submitted, not when it was last resumed
    done = client.get("real")
    running = next(c for c in done.status.conditions if c.type == "Running")
    assert (running.status, running.reason, running.message) == ("False", "Succeeded", messages[-1])
    created = done.metadata.model_extra["creationTimestamp"]
    assert _t(created) <= _t(events[0].time) and _t(created) < _t(done.status.start_time)
    end = times[-1]
    assert times[1] < end and times[messages.index("attempt 2: 1/1 node(s) running")] < end
    assert job.status.completion_time and _t(job.status.completion_time) == end
    json.dumps([e.to_dict() for e in events])  # plain data


def test_the_last_reward_stays_after_a_message_and_across_a_resume(tmp_path):
    """REWARD showed '-' after success and after suspend: reports without a reward overwrote it."""
    import json as _json

    from rarl.api.reports import Progress
    from rarl.progress import FileProgressReporter

    path = tmp_path / "run" / "progress.json"
    first = FileProgressReporter(path)
    first.report(Progress(stage="s", step=3, total_steps=4, reward=0.625))
    first.report(Progress(stage="s", step=4, total_steps=4, message="exported"))
    assert _json.loads(path.read_text())["reward"] == 0.625
    resumed = FileProgressReporter(path)  # the next attempt's trainer
    resumed.report(Progress(stage="s", step=3, total_steps=4, message="resuming"))
    assert _json.loads(path.read_text())["reward"] == 0.625
    resumed.report(Progress(stage="s", step=4, total_steps=4, reward=0.75))
    assert _json.loads(path.read_text())["reward"] == 0.75


def test_the_reward_stays_visible_after_suspend_and_after_success(client, monkeypatch, rarlctl_proc):
    """REWARD read '-' after a suspend and after success; here through the supervisor, Client and rarlctl get."""
    files = _submit(client)
    trainer = ("import signal, sys, time\n"
               "from rarl.api.reports import Progress\n"
               "from rarl.progress import FileProgressReporter\n"
               f"reporter = FileProgressReporter({str(files.progress)!r})\n"
               "def stop(*_):\n"
               "    reporter.report(Progress(stage='s', step=2, total_steps=4, message='checkpointed'))\n"
               "    sys.exit(3)\n"
               "signal.signal(signal.SIGTERM, stop)\n"
               "reporter.report(Progress(stage='s', step={step}, total_steps=4, reward={reward}))\n"
               "{rest}\n")
    _supervise(files, monkeypatch, trainer.format(step=2, reward=0.625, rest="time.sleep(30)"),
               sigterm_when=files.progress.exists)  # its handler is in place once it has reported
    assert client.get("hist").status.phase == "Suspended"
    assert client.get("hist").status.reward == 0.625
    client.resume("hist")
    rest = "reporter.report(Progress(stage='s', step=4, total_steps=4, message='exported'))"
    _supervise(files, monkeypatch, trainer.format(step=4, reward=0.75, rest=rest))
    job = client.get("hist")
    assert job.status.phase == "Succeeded" and job.status.reward == 0.75
    r = rarlctl_proc("get", "hist", env={"RARL_HOME": str(client.backend.home)})
    header, row = r.out.splitlines()[:2]
    assert row.split()[header.split().index("REWARD")] == "0.750", r.out
