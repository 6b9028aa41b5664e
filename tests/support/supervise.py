"""The local backend's real supervisor, run in-process (the test decides what its trainer command is)."""

from __future__ import annotations

import signal
import threading

from rarl.backends import supervisor as supervisor_mod
from rarl.backends.local_state import JobFiles


def run_supervisor(files: JobFiles, sigterm_after: float | None = None) -> None:
    """Run the job's supervisor until it returns; ``sigterm_after``: what `rarlctl suspend` does, after that long."""
    sup = supervisor_mod.Supervisor(files.root)
    previous = signal.getsignal(signal.SIGTERM)
    timer = None
    if sigterm_after is not None:  # SIGTERM to the runner (here: its handler)
        timer = threading.Timer(sigterm_after, sup._on_sigterm, args=(signal.SIGTERM, None))
        timer.start()
    try:
        assert sup.run() == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if timer:
            timer.cancel()
