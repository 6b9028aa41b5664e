"""What `rarlctl run` prints at the end: the evaluation before training and after every stage, side by side."""

from __future__ import annotations

import json

from rich.console import Console

from rarl.cli.render import print_before_after


def test_each_stage_end_gets_its_own_column(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({
        "baseline": {"invalid_rate": 1.0, "count": 8},
        "stages": {"cold-start": {"end": {"invalid_rate": 0.0, "n2/tau": 0.2}},
                   "ranking-aware": {"end": {"invalid_rate": 0.0, "n2/tau": 0.35}}},
        "final": {"invalid_rate": 0.0, "n2/tau": 0.35},
    }))
    console = Console(record=True, width=120)
    print_before_after(console, tmp_path)
    text = console.export_text()
    assert "BEFORE" in text and "AFTER cold-start" in text and "AFTER ranking-aware" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("n2/tau"))
    assert row.split()[1:] == ["-", "0.2000", "0.3500"]  # SFT's figure beside RL's, not only the final one


def test_a_run_without_stage_ends_shows_before_and_after(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"baseline": {"n1/mae": 2.0}, "stages": {},
                                                       "final": {"n1/mae": 1.0}}))
    console = Console(record=True, width=120)
    print_before_after(console, tmp_path)
    row = next(line for line in console.export_text().splitlines() if line.strip().startswith("n1/mae"))
    assert row.split()[1:] == ["2.0000", "1.0000"]
