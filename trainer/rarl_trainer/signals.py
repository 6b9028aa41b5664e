"""Stopping a run: SIGTERM (suspend, preemption, eviction) or SIGINT asks for a checkpoint and exit 3.

The handler only sets the ``StopFlag``; the checkpoint callback saves at the end of the step and
stops training, then ``interrupted_exit`` waits for that checkpoint's upload and says where it is.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

from rarl.api.vocabulary import ExitCode
from rarl_trainer.checkpointing import StopFlag, finish_uploads
from rarl_trainer.config import DistInfo
from rarl_trainer.reporting import write_termination_log

UPLOAD_GRACE_S = 90.0
"""How long an interrupted run waits for its last checkpoint's upload before exiting."""


def install_stop_handlers(stop: StopFlag, announce: bool) -> None:
    """SIGTERM (and SIGINT, where signals can be set: the main thread) set ``stop``; ``announce`` prints it."""

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if announce:
            print(f"rarl: {name} received: checkpointing at the end of this step", file=sys.stderr, flush=True)
        stop.set(name)

    signal.signal(signal.SIGTERM, handler)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def interrupted_exit(uploader, stop: StopFlag, dist: DistInfo, report: Callable[[str], None]) -> ExitCode:
    """The exit code of a stopped run: 3 once its checkpoint is stored (said by ``report`` and the
    termination log), 1 when the upload failed. Every rank returns the same code."""
    ok = finish_uploads(uploader, UPLOAD_GRACE_S) if dist.is_main else True
    if dist.is_main:
        last = uploader.last_completed if uploader else None
        if ok and last is not None:
            msg = f"interrupted ({stop.signal_name}) after checkpoint {last.uri}"
            report(msg)
            print(f"rarl: {msg}", file=sys.stderr, flush=True)
            write_termination_log(msg)
    flags = [1 if ok else 0]
    if dist.distributed:
        import torch.distributed as torch_dist

        torch_dist.broadcast_object_list(flags, src=0)
    return ExitCode.INTERRUPTED if flags[0] else ExitCode.CRASH
