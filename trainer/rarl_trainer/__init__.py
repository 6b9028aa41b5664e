"""RARL trainer: ranking-aware GRPO (TRL + PEFT) for VLMs and text LMs.

Entry points: ``python -m rarl_trainer --config job.yaml`` (one process, or each torchrun worker)
and ``python -m rarl_trainer.entrypoint <torchrun args>`` (torchrun that keeps exit codes 2/3).
Heavy imports (torch, transformers, trl) happen in the submodules, not here.
"""

import logging
import sys


class ConsoleHandler(logging.Handler):
    """The trainer's diagnostics as plain lines, as ``print`` wrote them: info on stdout, warnings and errors on
    stderr, each the stream of the moment (so output that a caller or a test redirects follows), flushed at once
    (so these lines and the ``print`` output of the trainer interleave in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging() -> logging.Logger:
    """The ``rarl_trainer`` loggers print plain messages (``ConsoleHandler``); idempotent.

    Called by the entry points (``cli.main``, ``entrypoint.main``) and on import of this package, so that
    in-process users of the trainer (tests, ``bench/``) see the same lines as a trainer process.
    """
    log = logging.getLogger(__name__)
    if not any(isinstance(h, ConsoleHandler) for h in log.handlers):
        log.addHandler(ConsoleHandler())
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


configure_logging()
