"""The trainer's diagnostics go through ``logging`` and still print as plain lines (info: stdout, warnings: stderr)."""

from __future__ import annotations

import ast
import logging

from tests.trainer.conftest import REPO


def test_info_on_stdout_warnings_on_stderr_plain(capsys):
    import rarl_trainer

    rarl_trainer.configure_logging()
    rarl_trainer.configure_logging()  # idempotent: one handler, one line each
    log = logging.getLogger("rarl_trainer.some_module")
    log.info("] step 1/8 loss=0.5")
    log.warning("rarl: warning: something")
    out = capsys.readouterr()
    assert out.out == "] step 1/8 loss=0.5\n"
    assert out.err == "rarl: warning: something\n"


def test_no_print_diagnostics_left():
    """Only a command's own result (predict's rows) may be printed; everything else goes through logging."""
    allowed = {"predict.py"}
    found = []
    for path in sorted((REPO / "trainer" / "rarl_trainer").rglob("*.py")):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{path.name}:{node.lineno}")
    assert not found, "print() diagnostics, use the module's logger: " + ", ".join(found)
