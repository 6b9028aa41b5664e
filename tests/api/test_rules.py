"""The ``checkpoint.onSpecChange`` decision: one pure function that the CLI and the trainer both follow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rarl.api import parse_job
from rarl.api.rules import ResumeDecision, resume_decision
from rarl.api.settings import config_hash, training_settings
from tests.api.test_types import MINIMAL

ROOT = Path(__file__).resolve().parents[2]

JOB = {**MINIMAL, "metadata": {"name": "rules"},
       "spec": {**MINIMAL["spec"], "model": {"base": "builtin:tiny-qwen2.5-vl"}, "dataset": {"format": "synthetic"},
                "reward": {"delta": 2.0}, "checkpoint": {"uri": "s3://ckpt/rules"}}}


def _spec(policy: str | None = None, delta: float = 2.0):
    checkpoint = {**JOB["spec"]["checkpoint"], **({"onSpecChange": policy} if policy else {})}
    return parse_job({**JOB, "spec": {**JOB["spec"], "reward": {"delta": delta}, "checkpoint": checkpoint}}).spec


@pytest.mark.parametrize("policy", [None, "fail", "resume", "restart"])
def test_the_same_settings_or_none_recorded_resume_whatever_the_policy(policy):
    spec = _spec(policy)
    same = resume_decision(spec, 30, config_hash(spec), training_settings(spec, by_alias=True))
    unrecorded = resume_decision(spec, 30, None, None)  # a checkpoint that predates config_hash
    for decision in (same, unrecorded):
        assert decision == ResumeDecision("resume", "checkpoint step 30 at s3://ckpt/rules")
        assert not decision.changed and decision.message is None and decision.what == ""


def test_changed_settings_follow_onspecchange():
    old = _spec(delta=1.0)
    recorded = config_hash(old), training_settings(old, by_alias=True)
    where = "checkpoint step 30 at s3://ckpt/rules"
    changes = ("reward.delta: 1.0 -> 2.0",)

    refused = resume_decision(_spec(), 30, *recorded)  # default policy: fail
    assert (refused.action, refused.where, refused.changes, refused.changed) == ("refuse", where, changes, True)
    assert refused.message == (
        f"checkpoint: {where} was written under other training settings: reward.delta: 1.0 -> 2.0. To train the "
        "new settings, use a new job name or checkpoint.uri, or set checkpoint.onSpecChange to restart (delete "
        "those checkpoints and start from step 0) or resume (continue from them anyway)")
    assert resume_decision(_spec("fail"), 30, *recorded) == refused
    assert resume_decision(_spec("resume"), 30, *recorded) == ResumeDecision("resume", where, changes)
    assert resume_decision(_spec("restart"), 30, *recorded) == ResumeDecision("restart", where, changes)


def test_a_changed_hash_without_recorded_settings_is_a_change_that_cannot_be_named():
    decision = resume_decision(_spec(), 7, "0123456789abcdef", None)
    assert decision.action == "refuse" and decision.changes == () and decision.changed
    assert decision.what.startswith("settings hash differs") and decision.what in decision.message
    assert resume_decision(_spec("restart"), 7, "0123456789abcdef", {}).action == "restart"


def test_only_the_rule_reads_onspecchange():
    """The CLI (rarl.resume) and the trainer (CheckpointSession.check_settings) act on the decision; neither decides
    again."""
    readers = sorted(str(path.relative_to(ROOT)) for folder in ("sdk", "trainer", "operator")
                     for path in (ROOT / folder).rglob("*.py")
                     if re.search(r"\bon_spec_change\b", path.read_text()))
    assert readers == ["sdk/rarl/api/rules.py", "sdk/rarl/api/types.py"]
    for caller in ("sdk/rarl/resume.py", "trainer/rarl_trainer/checkpoint_session.py"):
        assert "resume_decision(" in (ROOT / caller).read_text(), caller
