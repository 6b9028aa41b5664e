"""Operator settings from the environment: a value the chart got wrong stops the operator, naming it."""

from __future__ import annotations

import pytest

from rarl_operator.settings import Settings, SettingsError, from_env


def test_unset_and_empty_values_take_the_defaults(monkeypatch):
    for name in ("RARL_RESYNC_SECONDS", "RARL_WORKERS", "RARL_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RARL_TERMINATION_GRACE_SECONDS", "")
    s = from_env()
    assert (s.resync_seconds, s.workers, s.metrics_port, s.termination_grace_seconds) == (
        Settings.resync_seconds, Settings.workers, Settings.metrics_port, Settings.termination_grace_seconds)


def test_valid_values_are_read(monkeypatch):
    monkeypatch.setenv("RARL_RESYNC_SECONDS", "2.5")
    monkeypatch.setenv("RARL_WORKERS", "3")
    s = from_env()
    assert (s.resync_seconds, s.workers) == (2.5, 3)


@pytest.mark.parametrize("name,value,words", [
    ("RARL_WORKERS", "eight", "expected an integer"),
    ("RARL_WORKERS", "0", "at least 1"),
    ("RARL_RESYNC_SECONDS", "10s", "expected a number"),
    ("RARL_RESYNC_SECONDS", "0", "at least 0.05"),
    ("RARL_METRICS_PORT", "-1", "at least 0"),
])
def test_a_bad_value_is_an_error_that_names_it(monkeypatch, name, value, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=words) as err:
        from_env()
    assert str(err.value).startswith(f"{name}={value!r}")
