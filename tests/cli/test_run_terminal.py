"""``rarlctl run`` on a real terminal (a pty): SIGTERM leaves the terminal as it found it (issue 28, row 6).

rich hides the cursor while the bar is drawn; the default SIGTERM ended the process without showing it again.
A real trainer starts (the quickstart job); the test deletes it afterwards.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time

import pytest
import yaml

from tests.conftest import RARLCTL
from tests.sdk.test_phase_rules import QUICKSTART

pytestmark = pytest.mark.slow  # starts the quickstart job's trainer

HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"


def _read(fd: int, until: bytes, timeout: float) -> bytes:
    out, deadline = b"", time.monotonic() + timeout
    while until not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out


def test_sigterm_shows_the_cursor_again(tmp_path):
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(yaml.safe_load(QUICKSTART.read_text())))
    env = {**os.environ, "RARL_HOME": str(tmp_path / "home"), "TERM": "xterm"}
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(RARLCTL), "run", "-f", "job.yaml"], stdin=follower, stdout=follower,
                            stderr=follower, cwd=tmp_path, env=env, close_fds=True)
    os.close(follower)
    try:
        seen = _read(leader, b"/80", timeout=120)  # the bar is drawn (0/80 steps)
        assert HIDE in seen and b"/80" in seen, seen[-2000:]  # ... and the cursor hidden
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
        seen += _read(leader, SHOW, timeout=5)
        assert seen.rfind(SHOW) > seen.rfind(HIDE), seen[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
        subprocess.run([str(RARLCTL), "delete", "quickstart"], env=env, cwd=tmp_path, capture_output=True,
                       timeout=60, check=False)
