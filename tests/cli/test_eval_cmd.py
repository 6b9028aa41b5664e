"""``rarlctl eval`` through typer's CliRunner on a tiny app that registers eval_command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rarl.cli.eval_cmd import eval_command

app = typer.Typer()
app.command("eval")(eval_command)


@app.callback()
def _root() -> None:
    """Keep 'eval' as a sub-command."""


runner = CliRunner()


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_json_output(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.jsonl", [
        {"pred": [3], "target": [3]}, {"pred": [5], "target": [4]}, {"pred": None, "target": [2]},
        {"pred": [1, 2], "target": [1, 2]},
        {"completion": "<think>a</think><answer>[2, 1]</answer>", "target": [1, 2]},
    ])
    result = runner.invoke(app, ["eval", "-p", str(f), "-o", "json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n1/mae"] == pytest.approx(0.5)
    assert metrics["n1/acc"] == pytest.approx(1 / 3)
    assert metrics["n2/tau"] == pytest.approx(0.0)
    assert metrics["invalid_rate"] == pytest.approx(0.2)
    assert metrics["n1/srcc"] is not None  # two valid points: defined


def test_table_output(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.jsonl", [{"pred": [3], "target": [3]}, {"pred": [6], "target": [5]}])
    result = runner.invoke(app, ["eval", "--predictions", str(f)])
    assert result.exit_code == 0, result.output
    assert "n1/mae" in result.stdout and "0.5000" in result.stdout


def test_bad_rows_reported_with_line_numbers(tmp_path: Path) -> None:
    f = _write(tmp_path / "p.jsonl", [{"pred": [3], "target": [3]}, "{oops", {"pred": ["a"], "target": [1]},
                                      {"pred": [1]}])
    result = runner.invoke(app, ["eval", "-p", str(f), "-o", "json"])
    assert result.exit_code == 1
    assert "line 2" in result.output and "line 3" in result.output and "line 4" in result.output
    assert "Traceback" not in result.output


def test_unreadable_file_and_bad_output(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "-p", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "cannot read" in result.output
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    assert runner.invoke(app, ["eval", "-p", str(tmp_path / "bin.jsonl")]).exit_code == 2
    f = _write(tmp_path / "p.jsonl", [{"pred": [3], "target": [3]}])
    assert runner.invoke(app, ["eval", "-p", str(f), "-o", "xml"]).exit_code == 2  # usage, like --precision 0
    assert runner.invoke(app, ["eval", "-p", str(f), "--precision", "0"]).exit_code == 2
    empty = _write(tmp_path / "e.jsonl", [""])
    assert runner.invoke(app, ["eval", "-p", str(empty)]).exit_code == 1


def test_non_finite_predictions_and_length_mismatches_are_bad_rows(tmp_path: Path) -> None:
    """null marks an invalid answer; NaN, infinities, a wrong count and a bare number are a broken file, named by line."""
    lines = ['{"pred": [NaN], "target": [1]}', '{"pred": [1e999], "target": [1]}',
             '{"pred": [1, 2], "target": [1]}', '{"pred": null, "target": [1]}', '{"pred": 2, "target": 2}']
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["eval", "-p", str(f)])
    assert result.exit_code == 1
    assert "line 1: 'pred' must contain finite numbers" in result.output
    assert "line 2: 'pred' must contain finite numbers" in result.output
    assert "line 3: 'pred' has 2 values for 1 targets" in result.output
    assert "line 4" not in result.output
    assert "line 5: 'target' must be a non-empty list of numbers (one item: [2], not 2)" in result.output
