"""Run ``rarlctl`` in-process (fast); ``rarlctl_proc`` (tests/conftest.py) runs the real console script."""

from __future__ import annotations

import io
import sys

import pytest

from rarl.cli import main as cli_main
from tests.conftest import Result


@pytest.fixture
def rarlctl(capsys, monkeypatch):
    """Call ``rarlctl ARGS`` in-process through ``main`` (exit codes and error handling included)."""

    def run(*args: str, stdin: bytes | None = None) -> Result:
        cli_main.OPTIONS.__dict__.clear()  # back to the class defaults: no state leaks between calls
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        with pytest.raises(SystemExit) as info:
            cli_main.main(list(args))
        captured = capsys.readouterr()
        return Result(int(info.value.code or 0), captured.out, captured.err)

    return run
