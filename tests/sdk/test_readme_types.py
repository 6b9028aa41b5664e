"""The README's SDK example type-checks with mypy (``job.status.phase`` needs no None check).

mypy finds ``rarl`` through the development install as a user's mypy would (``make setup`` adds a .pth of
the source folders: setuptools' editable finder is invisible to mypy), with the annotations users get;
the second test shows the check can fail.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sdk_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### The Python SDK"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's SDK section has no python block"
    return match.group(1)


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--follow-imports", "silent",
         "--cache-dir", str(path.parent / "mypy-cache"), str(path)],
        check=False, capture_output=True, text=True, cwd=path.parent,
        env={k: v for k, v in os.environ.items() if k != "MYPYPATH"},
    )


def test_the_readme_sdk_example_type_checks(tmp_path):
    example = tmp_path / "example.py"
    example.write_text(sdk_example())
    proc = mypy(example)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_sees_the_sdks_types(tmp_path):
    """The check can fail: a wrong use of the same API is an error."""
    bad = tmp_path / "bad.py"
    bad.write_text("import rarl\nclient = rarl.Client('local')\nphase: int = client.get('x').status.phase\n")
    proc = mypy(bad)
    assert proc.returncode == 1 and "Incompatible types in assignment" in proc.stdout, proc.stdout + proc.stderr


def test_events_and_list_are_typed_for_users(tmp_path):
    """``Client.list`` shadows the builtin in the class body; ``events()`` and ``list()`` must still be lists of
    typed items, so a wrong use of an event's field is caught (it was ``Any``: nothing was)."""
    code = tmp_path / "typed.py"
    code.write_text(
        "import rarl\n"
        "client = rarl.Client('local')\n"
        "reasons: list[str] = [e.reason for e in client.events('x')]\n"
        "names: list[str] = [j.name for j in client.list()]\n"
        "when: int = client.events('x')[0].time\n"
    )
    proc = mypy(code)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and errors[0].startswith("typed.py:5:"), proc.stdout + proc.stderr
    assert 'expression has type "str | None", variable has type "int"' in errors[0]
