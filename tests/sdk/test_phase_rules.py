"""Phase names are checked, finished jobs refuse what cannot happen, and each outcome has its exit code.

Local backend, no training: a job is submitted suspended and its ``state.json`` is set to the
phase under test, exactly as the local runner writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rarl import Client, InvalidArgument
from rarl.api.types import RARLJob
from rarl.backends.base import JobEvent
from rarl.backends.local import LocalBackend
from rarl.errors import JobFinished, WaitTimeout

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def _doc(name: str = "idle") -> dict:
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["metadata"] = {"name": name}
    doc["spec"]["runPolicy"] = {"suspend": True}
    return doc


def _set_phase(home: Path, name: str, phase: str) -> None:
    path = home / "jobs" / name / "state.json"
    state = json.loads(path.read_text())
    state["phase"] = phase
    path.write_text(json.dumps(state))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def client(home) -> Client:
    return Client(LocalBackend(home))


def test_wait_takes_a_phase_name_a_comma_list_or_a_set(client):
    client.submit(_doc())
    assert client.wait("idle", until="Suspended", timeout=5).status.phase == "Suspended"
    assert client.wait("idle", until="Running,Suspended", timeout=5).status.phase == "Suspended"
    assert client.wait("idle", until={"Suspended"}, timeout=5).status.phase == "Suspended"


@pytest.mark.parametrize("until", ["Done", {"Done"}, "Succeeded,done", ""])
def test_unknown_phase_names_are_refused_before_waiting(client, until):
    client.submit(_doc())
    with pytest.raises(InvalidArgument, match=r"until: .* is not a phase; use one or more of: Pending"):
        client.wait("idle", until=until, timeout=60)


def test_waiting_for_a_phase_a_finished_job_cannot_reach_fails_at_once(client, home):
    client.submit(_doc())
    _set_phase(home, "idle", "Succeeded")
    with pytest.raises(JobFinished, match="'idle' is Succeeded: it will never be Suspended"):
        client.wait("idle", until="Suspended", timeout=30)  # not a WaitTimeout after 30 s
    with pytest.raises(WaitTimeout):
        _set_phase(home, "idle", "Suspended")
        client.wait("idle", until="Succeeded", timeout=0.3, poll_interval=0.1)


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_finished_job_cannot_be_suspended_or_resumed(client, home, phase):
    client.submit(_doc())
    _set_phase(home, "idle", phase)
    with pytest.raises(JobFinished, match=f"is {phase}: a finished job cannot be suspended"):
        client.suspend("idle")
    with pytest.raises(JobFinished, match=f"is {phase}, not Suspended: a finished job cannot be resumed"):
        client.resume("idle")


def test_status_is_always_present_and_events_are_typed(client):
    job = RARLJob.model_validate(_doc())
    assert job.status.phase is None and job.status.conditions == []  # no None check needed
    assert "status" not in job.to_dict()  # an empty status is not written
    client.submit(_doc())
    events = client.events("idle")
    assert events and all(isinstance(e, JobEvent) for e in events)  # attributes, like get()'s objects
    assert events[0].to_dict() == {"type": "Normal", "reason": "Suspended", "message": events[0].message,
                                   "time": events[0].time}
    assert [e.reason for e in events] == ["Suspended"]  # created suspended: no attempt yet (as on a cluster)


def test_labels_must_be_a_mapping(client):
    with pytest.raises(InvalidArgument, match="labels: expected a dict of strings"):
        client.list(labels="team=vision")  # type: ignore[arg-type]


def test_submitting_a_finished_job_again_keeps_its_training_record(client, home):
    """Issue 28 row 3: a re-submit (the README's "exported again in seconds") deleted the job folder, so
    run/tensorboard lost the earlier stages' curves. The state starts fresh; the record stays."""
    client.submit(_doc())
    folder = home / "jobs" / "idle"
    curves = folder / "run" / "tensorboard" / "warmup" / "events.out.tfevents.1"
    curves.parent.mkdir(parents=True)
    curves.write_bytes(b"the first run's curves")
    (folder / "logs").mkdir(exist_ok=True)
    (folder / "logs" / "attempt-1.log").write_text("the first run's log\n")
    (folder / "run" / "progress.json").write_text("{}")
    _set_phase(home, "idle", "Succeeded")
    again = client.submit(_doc())
    assert again.status.phase == "Suspended" and again.status.attempt == 0  # a fresh job: no attempt yet
    assert curves.read_bytes() == b"the first run's curves"
    assert (folder / "logs" / "attempt-1.log").read_text() == "the first run's log\n"
    assert not (folder / "run" / "progress.json").exists()  # the earlier run's state is gone


def test_wait_with_timeout_zero_looks_once_and_other_timeouts_are_checked(client):
    """Issue 28 row 11: ``wait(timeout=0)`` said "still Pending after 0 s" and a negative or NaN timeout
    was taken as given. 0 looks once (like ``kubectl wait --timeout=0``) and says so; the rest is refused."""
    client.submit(_doc())
    with pytest.raises(WaitTimeout, match=r"job 'idle' is Suspended, not Failed or Succeeded: looked once \(timeout 0\)"):
        client.wait("idle", timeout=0)
    for bad in (-1, float("nan"), float("inf"), True, "10"):
        with pytest.raises(InvalidArgument, match=r"timeout: expected seconds >= 0"):
            client.wait("idle", timeout=bad)  # type: ignore[arg-type]


def test_following_the_logs_of_a_job_that_never_ran_ends(client):
    """``logs -f`` of a job created suspended waited forever for a log no attempt would write."""
    import threading

    client.submit(_doc())
    lines: list[str] = []
    follower = threading.Thread(target=lambda: lines.extend(client.logs("idle", follow=True)), daemon=True)
    follower.start()
    follower.join(timeout=10)
    assert not follower.is_alive() and lines == []


def test_fetching_a_model_that_was_not_exported_is_typed(client, tmp_path):
    """Issue 30: one check (``rarl.errors.exported_model_uri``) for fetch and predict; a StorageError as before."""
    from rarl import ModelNotExported, StorageError

    client.submit(_doc())
    with pytest.raises(ModelNotExported, match=r"job 'idle' has no exported model yet \(phase Suspended\)") as err:
        client.fetch_model("idle", tmp_path / "dest")
    assert isinstance(err.value, StorageError)
