"""Run ``rarlctl`` in-process (fast) or as a real subprocess (the installed console script)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from rarl.cli import main as cli_main

RARLCTL = Path(sys.executable).with_name("rarlctl")


@dataclass
class Result:
    code: int
    out: str
    err: str


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


@pytest.fixture
def rarlctl_proc():
    """Run the installed ``rarlctl`` console script as a subprocess."""

    def run(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> Result:
        proc = subprocess.run([str(RARLCTL), *args], input=stdin, capture_output=True, cwd=cwd, timeout=60, check=False,
                              env={**os.environ, "COLUMNS": "200"})
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return run
