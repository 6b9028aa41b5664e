"""``rarlctl eval`` through the real entry point (issue 15, items 4 and 8): usage errors exit 2, bad rows exit 1
with one line each, rows hold lists (never a bare number), and the table looks like every other verb's.
"""

from __future__ import annotations

import json

import pytest

BOX = set("┏┓┗┛┃━│─┡┩╇┳┻╋┼")


def _rows(tmp_path, *lines: str, name: str = "p.jsonl"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_table_is_styled_like_every_other_verb(rarlctl, tmp_path):
    path = _rows(tmp_path, '{"pred": [3], "target": [3]}', '{"pred": [6], "target": [5]}')
    r = rarlctl("eval", "-p", str(path))
    assert r.code == 0, r.err
    lines = [line.split() for line in r.out.splitlines() if line.strip()]
    assert ["METRIC", "VALUE"] in lines, r.out  # upper-case headers, as list/get/describe print them
    assert not BOX & set(r.out), r.out  # no box drawing: kubectl-style columns
    assert ["n1/mae", "0.5000"] in lines and ["count", "2"] in lines and ["n1/tau", "1.0000"] in lines


@pytest.mark.parametrize(("row", "words"), [
    ('{"pred": 5, "target": [4]}', "line 1: 'pred' must be a list of numbers or null"),
    ('{"pred": [5], "target": 4}', "line 1: 'target' must be a non-empty list of numbers"),
    ('{"pred": [NaN], "target": [1]}', "line 1: 'pred' must contain finite numbers"),
    ('{"pred": [1e999], "target": [1]}', "line 1: 'pred' must contain finite numbers"),
    ('{"pred": [1, 2], "target": [1]}', "line 1: 'pred' has 2 values for 1 targets"),
    ('{"pred": [null], "target": [1]}', "line 1: 'pred' must be a list of numbers or null"),
])
def test_bad_rows_exit_1_with_one_line_each(rarlctl, tmp_path, row, words):
    # a long path: the error line must not be wrapped at 80 columns
    path = _rows(tmp_path / ("a-folder-with-a-long-name-" * 3), row, '{"pred": null, "target": [2]}')
    r = rarlctl("eval", "-p", str(path))
    assert r.code == 1, r
    assert r.err.count("\n") == 1 and r.err.startswith(f"error: {path}: {words}"), r.err
    assert r.out == ""


@pytest.mark.parametrize(("args", "words"), [
    (["-o", "xml"], "-o: unknown output format 'xml'; use table, json or yaml"),
    (["--precision", "0"], "--precision must be > 0"),
])
def test_usage_errors_exit_2(rarlctl, tmp_path, args, words):
    path = _rows(tmp_path, '{"pred": [3], "target": [3]}')
    r = rarlctl("eval", "-p", str(path), *args)
    assert r.code == 2 and r.err == f"error: {words}\n", r.err


def test_an_unreadable_file_is_one_line_exit_2(rarlctl, tmp_path):
    missing = tmp_path / ("a-folder-with-a-long-name-" * 3) / "missing.jsonl"
    r = rarlctl("eval", "-p", str(missing))
    assert r.code == 2 and r.err == f"error: cannot read {missing}: No such file or directory\n", r.err


def test_the_global_o_reaches_eval_and_null_marks_an_invalid_answer(rarlctl, tmp_path):
    path = _rows(tmp_path, '{"pred": [3], "target": [3]}', '{"pred": null, "target": [2]}')
    r = rarlctl("-o", "json", "eval", "-p", str(path))
    assert r.code == 0, r.err
    metrics = json.loads(r.out)
    assert metrics["count"] == 2 and metrics["invalid_rate"] == 0.5 and metrics["n1/mae"] == 0.0
