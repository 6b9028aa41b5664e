"""``rarlctl run`` validates the job file once, and not again on every 1-second poll (issue 30, item 3).

It validated the spec four times before step 1 and once more per poll. Local backend, no training: the job
stays Pending for a number of polls, then its ``state.json`` says Succeeded, as the runner would write it.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from rarl.api import validation
from rarl.backends.local import LocalBackend
from tests.sdk.test_phase_rules import QUICKSTART


def _run_counting(rarlctl, tmp_path, monkeypatch, polls: int) -> tuple[int, list[int]]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(LocalBackend, "_start_runner", lambda self, files: 0)
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["metadata"] = {"name": f"once-{polls}"}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    home = tmp_path / "home"
    calls: list[int] = []
    real_validate = validation.validate_document
    monkeypatch.setattr(validation, "validate_document", lambda doc: calls.append(1) or real_validate(doc))
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the waits' polls, without their second each
        slept.append(seconds)
        if len(slept) == polls:
            path = home / "jobs" / f"once-{polls}" / "state.json"
            state = json.loads(path.read_text())
            state["phase"] = "Succeeded"
            path.write_text(json.dumps(state))

    monkeypatch.setattr(time, "sleep", sleep)
    r = rarlctl("run", "-f", "job.yaml", "-q", "--home", str(home))
    assert r.code == 0, (r.out, r.err)
    assert f"rarljob/once-{polls} Succeeded" in r.out
    return len(calls), slept


@pytest.mark.parametrize("polls", [2, 12])
def test_run_validates_the_spec_a_few_times_however_long_it_waits(rarlctl, tmp_path, monkeypatch, polls):
    validations, slept = _run_counting(rarlctl, tmp_path, monkeypatch, polls)
    assert len(slept) == polls
    # the file once, the job folder's job.yaml once: never once per poll
    assert validations <= 2, f"{validations} validations over {polls} polls"
