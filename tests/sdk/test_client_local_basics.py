"""rarl.Client over the local backend: job input forms, state on disk, errors (no training needed)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from rarl import BackendUnavailable, Client, InvalidSpec, JobNotFound
from rarl.backends.local import LocalBackend, absolutize
from rarl.client import load_job
from rarl.errors import RARLError

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def suspended_job(name: str = "idle", **labels: str) -> dict:
    """A job created suspended: the local backend records it without starting a trainer."""
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["metadata"] = {"name": name, "labels": labels}
    doc["spec"]["runPolicy"] = {"suspend": True}
    return doc


@pytest.fixture
def client(tmp_path) -> Client:
    return Client(LocalBackend(tmp_path / "home"))


def test_load_job_accepts_model_dict_and_path(tmp_path):
    from_path = load_job(QUICKSTART)
    assert load_job(str(QUICKSTART)) == from_path
    assert load_job(from_path.to_dict()) == from_path
    assert load_job(from_path) is from_path
    with pytest.raises(InvalidSpec, match="cannot read"):
        load_job(tmp_path / "missing.yaml")
    bad = copy.deepcopy(from_path.to_dict())
    bad["spec"]["resources"]["nodes"] = 0
    with pytest.raises(InvalidSpec) as info:
        load_job(bad)
    assert info.value.problems[0].path == "spec.resources.nodes"


def test_submitted_suspended_job_is_listed_with_state(client, tmp_path):
    job = client.submit(suspended_job("idle", team="vision"))
    assert job.status.phase == "Suspended"
    assert job.status.total_steps == job.spec.total_steps() == 80 and job.status.attempt == 0
    suspended = job.status.conditions[-1]
    assert (suspended.type, suspended.status, suspended.message) == (
        "Suspended", "True", "created suspended (spec.runPolicy.suspend)")
    again = client.get("idle")
    assert again.spec == job.spec and again.status.phase == "Suspended"
    client.submit(suspended_job("other", team="audio"))
    assert [j.name for j in client.list()] == ["idle", "other"]
    assert [j.name for j in client.list(labels={"team": "audio"})] == ["other"]
    assert client.list(labels={"team": "none"}) == []


def test_relative_locations_become_absolute(client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = client.submit(suspended_job())
    assert job.spec.checkpoint.uri == str(tmp_path / ".rarl/runs/quickstart/checkpoints")
    assert job.spec.model.base == "builtin:tiny-qwen2.5-vl"


def test_absolutize_keeps_hub_ids_and_uris(tmp_path):
    job = load_job(QUICKSTART)
    job.spec.model.base = "Qwen/Qwen2.5-VL-3B-Instruct"
    job.spec.output.uri = "s3://bucket/x"
    out = absolutize(job, tmp_path)
    assert out.spec.model.base == "Qwen/Qwen2.5-VL-3B-Instruct" and out.spec.output.uri == "s3://bucket/x"
    assert job.spec.checkpoint.uri == ".rarl/runs/quickstart/checkpoints", "the input job is not modified"


def test_unknown_job_raises_job_not_found(client):
    for call in (client.get, client.suspend, client.resume, client.delete):
        with pytest.raises(JobNotFound, match="no local job named 'ghost'"):
            call("ghost")
    with pytest.raises(JobNotFound):
        list(client.logs("ghost"))


def test_resume_of_a_job_that_is_not_suspended_is_refused(client, tmp_path):
    client.submit(suspended_job())
    state = tmp_path / "home" / "jobs" / "idle" / "state.json"
    text = state.read_text().replace('"Suspended"', '"Succeeded"')
    state.write_text(text)
    with pytest.raises(RARLError, match="not Suspended"):
        client.resume("idle")


def test_multi_node_jobs_are_refused_locally(client):
    doc = suspended_job()
    doc["spec"]["resources"] = {"nodes": 2}
    with pytest.raises(InvalidSpec, match=r"spec\.resources\.nodes"):
        client.submit(doc)


def test_an_active_job_cannot_be_submitted_twice(client):
    client.submit(suspended_job())
    with pytest.raises(RARLError, match="already exists"):
        client.submit(suspended_job())


def test_delete_forgets_the_job_but_not_its_storage(client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / ".rarl/runs/quickstart/checkpoints/step-1"
    ckpt.mkdir(parents=True)
    client.submit(suspended_job())
    client.delete("idle")
    assert client.list() == [] and ckpt.exists()


def test_unwritable_home_is_backend_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    client = Client(LocalBackend(blocker / "home"))
    with pytest.raises(BackendUnavailable, match="cannot write the job folder"):
        client.submit(suspended_job())


def test_a_dead_runner_is_reported_as_failed_with_its_last_lines(client, tmp_path):
    """A runner that vanished (killed with the machine, say) must not look Running forever."""
    import json

    client.submit(suspended_job())
    files = tmp_path / "home" / "jobs" / "idle"
    (files / "logs").mkdir()
    (files / "logs" / "attempt-1.log").write_text("step 1\nRuntimeError: out of memory\n")
    state = json.loads((files / "state.json").read_text())
    state.update(phase="Running", runnerPid=2**22 + 12345)  # no such process
    (files / "state.json").write_text(json.dumps(state))
    job = client.get("idle")
    assert job.status.phase == "Failed"
    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert failed.reason == "RunnerDied" and "out of memory" in failed.message


def test_client_rejects_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        Client("slurm")


def test_env_rarl_home_is_the_default_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RARL_HOME", str(tmp_path / "h"))
    assert LocalBackend().home == (tmp_path / "h").resolve()
    assert os.environ["RARL_HOME"]
