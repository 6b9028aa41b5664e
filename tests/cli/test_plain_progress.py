"""Progress without a terminal (a CI log, ``> out.log``): plain lines, step lines rate-limited, heartbeats."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rarl.cli.render import PlainProgress, progress_line


def _job(phase="Running", stage="warmup", step=0, reward=None, eta=None, total=20):
    status = SimpleNamespace(phase=phase, stage=stage, step=step, total_steps=total, reward=reward, eta_seconds=eta)
    return SimpleNamespace(name="ci", status=status, spec=SimpleNamespace(total_steps=lambda: total))


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_names_phase_stage_step_reward_eta_and_elapsed():
    line = progress_line(_job(step=3, reward=0.51234, eta=125), elapsed=3725)
    assert line == "rarljob/ci Running stage warmup step 3/20 reward 0.512 eta 0:02:05 elapsed 1:02:05"
    assert progress_line(_job(phase=None, stage=None), 0) == "rarljob/ci Pending step 0/20 elapsed 0:00:00"


def test_step_lines_are_rate_limited_but_phase_and_stage_changes_always_print():
    clock, lines = Clock(), []
    plain = PlainProgress(echo=lines.append, step_seconds=10, clock=clock)
    plain(_job(phase="Pending", stage=None))
    plain(_job(step=1, reward=0.1))  # phase changed: printed
    clock.now = 3
    plain(_job(step=2, reward=0.2))  # 3 s after the last line: held back
    plain(_job(step=2, reward=0.2))  # unchanged: nothing
    clock.now = 12
    plain(_job(step=3, reward=0.3))  # 12 s: printed
    clock.now = 13
    plain(_job(stage="ranking", step=4, reward=0.4))  # stage changed: printed at once
    clock.now = 14
    plain(_job(stage="ranking", step=5, reward=0.5))  # held back ...
    plain.heartbeat()  # ... until the heartbeat prints the newest state
    plain.heartbeat()  # and again while nothing changes (the job is alive)
    plain.heartbeat(silent_for=30)  # ... but not right after a line was printed
    steps = [line.split(" step ")[1].split()[0] for line in lines]
    assert steps == ["0/20", "1/20", "3/20", "4/20", "5/20", "5/20"] and len(lines) == 6
    assert "Pending" in lines[0] and "stage ranking" in lines[3]


def test_zero_seconds_prints_every_step(monkeypatch):
    monkeypatch.setenv("RARL_PROGRESS_SECONDS", "0")
    lines = []
    plain = PlainProgress(echo=lines.append, clock=Clock())
    for step in range(1, 5):
        plain(_job(step=step))
    assert len(lines) == 4


@pytest.mark.parametrize("raw", ["-1", "soon", "inf", "nan"])
def test_a_bad_interval_is_refused_by_name(monkeypatch, raw):
    from rarl.cli.app import CLIError

    monkeypatch.setenv("RARL_PROGRESS_SECONDS", raw)
    with pytest.raises(CLIError, match="RARL_PROGRESS_SECONDS"):
        PlainProgress()
