"""A local job's spec is validated once per process, not on every poll of a wait (issue 30, item 3).

``Client.wait`` polls ``get`` every second for as long as the job trains; each ``get`` read ``job.yaml``
and validated it again. The local backend keeps the validated spec of a job folder until its ``job.yaml``
changes (a job submitted again). Local backend, no training: no runner is started.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from rarl import Client
from rarl.api import validation
from rarl.backends.local import LocalBackend

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def _doc(name: str = "once", **labels: str) -> dict:
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["metadata"] = {"name": name, "labels": labels}
    return doc


@pytest.fixture
def validations(monkeypatch) -> list[str]:
    """Every ``validate_document`` call (the full validation a YAML document or a dict gets)."""
    calls: list[str] = []
    real = validation.validate_document

    def counting(doc):
        calls.append((doc.get("metadata") or {}).get("name", "?") if isinstance(doc, dict) else "?")
        return real(doc)

    monkeypatch.setattr(validation, "validate_document", counting)
    return calls


@pytest.fixture
def client(tmp_path, monkeypatch) -> Client:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(LocalBackend, "_start_runner", lambda self, files: 0)  # stays Pending: nothing trains
    return Client(LocalBackend(tmp_path / "home"))


@pytest.mark.parametrize("polls", [3, 30])
def test_a_wait_validates_no_more_often_as_it_polls_longer(client, tmp_path, validations, monkeypatch, polls):
    client.submit(_doc())
    gets = []
    real_get = LocalBackend.get

    def get(self, name):  # the runner's part: Succeeded after ``polls`` polls
        gets.append(name)
        if len(gets) == polls:
            state = tmp_path / "home" / "jobs" / name / "state.json"
            state.write_text(json.dumps({**json.loads(state.read_text()), "phase": "Succeeded"}))
        return real_get(self, name)

    monkeypatch.setattr(LocalBackend, "get", get)
    validations.clear()
    assert client.wait("once", poll_interval=0).status.phase == "Succeeded"
    assert validations == [], f"{len(validations)} validations in {len(gets)} polls"
    assert len(gets) == polls


def test_a_job_submitted_again_is_read_anew(client):
    client.submit({**_doc(), "spec": {**_doc()["spec"], "runPolicy": {"suspend": True}}})
    assert client.get("once").metadata.labels == {}
    client.delete("once")
    client.submit({**_doc(team="b"), "spec": {**_doc()["spec"], "runPolicy": {"suspend": True}}})
    assert client.get("once").metadata.labels == {"team": "b"}


def test_a_job_yaml_changed_on_disk_is_validated_again(client, tmp_path, validations):
    client.submit(_doc())
    config = tmp_path / "home" / "jobs" / "once" / "job.yaml"
    doc = yaml.safe_load(config.read_text())
    doc["metadata"]["labels"] = {"team": "changed"}
    stat = config.stat()
    config.write_text(yaml.safe_dump(doc))
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a later write, even on a coarse clock
    validations.clear()
    assert client.get("once").metadata.labels == {"team": "changed"}
    assert len(validations) == 1
    client.get("once")
    assert len(validations) == 1


def test_what_get_returns_is_the_callers_to_change(client):
    client.submit(_doc())
    first = client.get("once")
    first.metadata.labels["mine"] = "x"
    first.spec.grpo.seed = 12345
    second = client.get("once")
    assert "mine" not in second.metadata.labels and second.spec.grpo.seed != 12345
