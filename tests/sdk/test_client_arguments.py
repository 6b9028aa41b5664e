"""Bad arguments to ``rarl.Client`` are one typed error that names the argument (issue 15, item 9), and
an argument that has no meaning for the backend is refused, not ignored (item 1's rule, in the SDK).

Local backend, no training: the job is submitted suspended (see tests/sdk/test_phase_rules.py).
"""

from __future__ import annotations

import inspect
import json
import re

import pytest

import rarl
from rarl import Client, InvalidArgument, JobNotFound
from rarl.backends.local import LocalBackend
from rarl.errors import RARLError
from rarl.storage import upload_tree
from tests.sdk.test_phase_rules import _doc, _set_phase


@pytest.fixture
def client(tmp_path, monkeypatch) -> Client:
    monkeypatch.chdir(tmp_path)
    return Client(LocalBackend(tmp_path / "home"))


@pytest.mark.parametrize(("call", "words"), [
    (lambda c: c.get(5), "name: expected a job name (a string), got int"),
    (lambda c: c.delete(None), "name: expected a job name (a string), got NoneType"),
    (lambda c: c.suspend(5), "name: expected a job name (a string), got int"),
    (lambda c: c.resume(["idle"]), "name: expected a job name (a string), got list"),
    (lambda c: c.wait("idle", until=5), "until: expected a phase, 'A,B' or a set of phases, got int"),
    (lambda c: c.submit(5), "job: expected a RARLJob, a dict or the path of a YAML file, got int"),
    (lambda c: c.list(namespace="ml"), "namespace: only the kubernetes backend has namespaces"),
    (lambda c: list(c.logs("idle", node=1)), "node: the local backend runs one node (0); got 1"),
    (lambda c: c.fetch_model("idle", ""), "dest is empty"),
])
def test_bad_arguments_are_invalid_argument_naming_them(client, call, words):
    client.submit(_doc())
    with pytest.raises(InvalidArgument) as info:
        call(client)
    assert words in str(info.value)


def test_fetch_model_checks_dest_before_writing(client, tmp_path):
    client.submit(_doc())
    src = tmp_path / "model-src"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"w" * 100)
    upload_tree(src, str(tmp_path / "model-out"))
    state = client.backend.jobs_dir / "idle" / "state.json"
    doc = json.loads(state.read_text())
    doc["modelURI"] = str(tmp_path / "model-out")
    state.write_text(json.dumps(doc))
    _set_phase(client.backend.home, "idle", "Succeeded")
    with pytest.raises(InvalidArgument, match="dest is empty"):
        client.fetch_model("idle", "")
    assert not (tmp_path / "weights.bin").exists()  # was: the model written into the current folder
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(InvalidArgument, match=f"dest {re.escape(str(afile))}: exists and is not a folder"):
        client.fetch_model("idle", afile)  # was: a raw FileExistsError
    assert afile.read_text() == "x"
    assert (client.fetch_model("idle", tmp_path / "m") / "weights.bin").read_bytes() == b"w" * 100


def test_a_name_that_is_not_a_job_name_never_leaves_the_jobs_folder(client, tmp_path):
    """``delete('../../victim')`` used to remove any folder holding a job.yaml."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "job.yaml").write_text("kind: RARLJob\n")
    (victim / "data.txt").write_text("keep me")
    for name in ("../../victim", str(victim)):
        with pytest.raises(JobNotFound, match="no local job named"):
            client.delete(name)
        with pytest.raises(JobNotFound):
            client.get(name)
    assert (victim / "data.txt").read_text() == "keep me"


def test_every_public_method_says_what_it_raises():
    """kubeflow/sdk style: each method's docstring names its errors, and each named error is rarl's."""
    for name, method in inspect.getmembers(Client, inspect.isfunction):
        if name.startswith("_") and name != "__init__":
            continue
        doc = inspect.getdoc(method) or ""
        assert doc, f"Client.{name} has no docstring"
        assert "Raises" in doc, f"Client.{name}: the docstring does not say what it raises"
        for error in re.findall(r"``(\w+)``", doc.split("Raises", 1)[1]):
            if error[0].isupper() and error.endswith(("Error", "Argument", "Spec", "Found", "Finished", "Timeout",
                                                        "Unavailable")):
                assert issubclass(getattr(rarl.errors, error), RARLError), (name, error)
