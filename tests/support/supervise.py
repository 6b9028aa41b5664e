"""The local backend's real supervisor, run in-process (the test decides what its trainer command is)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from rarl.backends import supervisor as supervisor_mod
from rarl.backends.local_state import JobFiles


def run_supervisor(files: JobFiles, sigterm_after: float | None = None,
                   sigterm_when: Callable[[], bool] | None = None) -> None:
    """Run the job's supervisor until it returns, sending what `rarlctl suspend` sends (SIGTERM to the runner,
    here to its handler) ``sigterm_after`` seconds after the start, or as soon as ``sigterm_when()`` holds (a
    stand-in trainer that has installed its handler: not a fixed delay that a loaded machine can outrun)."""
    sup = supervisor_mod.Supervisor(files.root)
    previous = signal.getsignal(signal.SIGTERM)
    done = threading.Event()

    def send() -> None:
        if sigterm_when is not None:
            while not sigterm_when():
                if done.wait(0.05):
                    return
        elif sigterm_after is None or done.wait(sigterm_after):
            return
        sup._on_sigterm(signal.SIGTERM, None)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        assert sup.run() == 0
    finally:
        done.set()
        sender.join()
        signal.signal(signal.SIGTERM, previous)
