"""Stopping a run: SIGTERM (suspend, preemption, eviction) or SIGINT asks for a checkpoint and exit 3.

The handler only sets the ``StopFlag``; the checkpoint callback saves at the end of the step and
stops training, then ``interrupted_exit`` waits for that checkpoint's upload and says where it is.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

import torch.distributed as torch_dist

from rarl.api.vocabulary import ExitCode
from rarl_trainer.checkpointing import StopFlag
from rarl_trainer.config import DistInfo
from rarl_trainer.reporting import write_termination_log

log = logging.getLogger(__name__)

UPLOAD_GRACE_S = 90.0
"""How long an interrupted run waits for its last checkpoint's upload before exiting."""


def install_stop_handlers(stop: StopFlag, announce: bool) -> None:
    """SIGTERM (and SIGINT, where signals can be set: the main thread) set ``stop``; ``announce`` prints it."""

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if announce:
            log.warning(f"rarl: {name} received: checkpointing at the end of this step")
        stop.set(name)

    signal.signal(signal.SIGTERM, handler)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def interrupted_exit(uploader, stop: StopFlag, dist: DistInfo, report: Callable[[str], None],
                     collective_timeout_s: float) -> ExitCode:
    """The exit code of a stopped run: 3 once its checkpoint is stored (said by ``report`` and the
    termination log), 1 when the upload failed. Every rank returns the same code.

    Rank 0 waits for the upload (up to ``UPLOAD_GRACE_S``) in slices far shorter than the
    process-group timeout (``collective_timeout_s``, ``runPolicy.collectiveTimeoutSeconds``, which
    may be as short as 10 s), telling the other ranks after each slice whether it is done: they
    never wait in one collective for the whole upload.
    """
    slice_s = max(1.0, min(10.0, collective_timeout_s / 4))
    deadline = time.monotonic() + UPLOAD_GRACE_S
    while True:
        state = [_RUNNING]
        if dist.is_main:
            try:
                done = uploader is None or uploader.wait(max(0.0, min(slice_s, deadline - time.monotonic())))
            except Exception as e:
                log.warning(f"rarl: checkpoint upload failed: {e}")
                state[0] = _FAILED
            else:
                if done:
                    state[0] = _STORED
                elif time.monotonic() >= deadline:
                    log.warning(f"rarl: the last checkpoint upload is still running after {UPLOAD_GRACE_S:g} s")
                    state[0] = _FAILED
        if dist.distributed:
            torch_dist.broadcast_object_list(state, src=0)
        if state[0] != _RUNNING:
            break
    ok = state[0] == _STORED
    if dist.is_main and ok:
        last = uploader.last_completed if uploader else None
        if last is not None:
            msg = f"interrupted ({stop.signal_name}) after checkpoint {last.uri}"
            report(msg)
            log.warning(f"rarl: {msg}")
            write_termination_log(msg)
    return ExitCode.INTERRUPTED if ok else ExitCode.CRASH


_RUNNING, _STORED, _FAILED = "running", "stored", "failed"

