"""The README's Quickstart, command by command, as a new user types it (issue 28, row 12).

Everything but the ``pip install`` line (the test runs in the installed project): ``init`` writes the
example, ``run`` trains it (a real trainer process, tiny model built offline), ``predict`` answers
held-out items with the export, ``eval`` scores them. Output goes to pipes, as in a CI log.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains the quickstart job

README = Path(__file__).resolve().parents[2] / "README.md"


def quickstart_commands() -> list[list[str]]:
    block = README.read_text().split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("rarlctl")]


def test_the_readme_quickstart_runs_as_written(rarlctl_proc, tmp_path):
    commands = quickstart_commands()
    assert [c[1] for c in commands] == ["init", "run", "predict", "eval"], commands
    results = [rarlctl_proc(*c[1:], cwd=tmp_path, timeout=900) for c in commands]
    for command, r in zip(commands, results, strict=True):
        assert r.code == 0, (command, r.out[-2000:], r.err[-2000:])
    _init, run, predict, evaluate = results
    assert (tmp_path / "my-job.yaml").is_file()
    assert "step" in run.out and "Succeeded" in run.out  # progress lines without a terminal, then the outcome
    # where a relative checkpoint.uri and output.uri resolved (a run from another folder starts afresh)
    assert f"checkpoints: {tmp_path / '.rarl/runs/quickstart/checkpoints'}" in run.out, run.out[:1000]
    rows = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert rows and all({"pred", "target", "completion"} <= set(row) for row in rows)
    assert "n1/mae" in evaluate.out and "invalid_rate" in evaluate.out
    assert "Loading weights" not in predict.err + predict.out  # transformers' own bar is not the user's output
