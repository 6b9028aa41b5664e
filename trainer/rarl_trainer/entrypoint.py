"""``python -m rarl_trainer.entrypoint <torchrun arguments>``: torchrun that keeps the exit-code contract.

Why: torchrun reports any failed worker as exit code 1, so the trainer's 2 (configuration error)
and 3 (interrupted after a checkpoint) would never reach the operator. This launcher takes
exactly torchrun's arguments, runs ``torch.distributed.run`` in-process, lets every worker record
its own exit code in a temporary folder (``$RARL_EXIT_CODE_DIR``, written by ``rarl_trainer.cli``)
and exits with the job's code:

* every worker 0 -> 0;
* any worker 2 -> 2 (the message is already on stderr and in the termination log);
* otherwise local rank 0 exited 3 (and no rank crashed) -> 3;
* anything else (a crash, a worker killed before recording) -> 1.

On SIGTERM torchrun forwards the signal to its workers (they checkpoint and exit 3) and waits
for them before SIGKILL: ``$TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` seconds. torch's own default, 30 s,
is too short to save and upload a multi-GB checkpoint, so this launcher defaults it to
``DEFAULT_SHUTDOWN_TIMEOUT_S`` (the local runner waits for the trainer as long as it takes); in
a pod the operator sets it from the pod's termination grace period, minus a margin for the
launcher to collect the exit codes before the kubelet kills the container.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from rarl.api.vocabulary import ExitCode
from rarl_trainer import configure_logging

log = logging.getLogger(__name__)

EXIT_CODE_DIR_ENV = "RARL_EXIT_CODE_DIR"
# Read by torchrun since pytorch#172596 (merged 2026-03; torch 2.13 has it); older releases keep 30 s.
SHUTDOWN_TIMEOUT_ENV = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"
DEFAULT_SHUTDOWN_TIMEOUT_S = 600


def combine(codes: dict[int, int], expected: int | None) -> int:
    """The job's exit code from each rank's recorded code (see module doc)."""
    if not codes:
        return ExitCode.CRASH
    values = set(codes.values())
    if ExitCode.CONFIG in values:
        return ExitCode.CONFIG
    complete = expected is None or len(codes) >= expected
    if values == {ExitCode.OK} and complete:
        return ExitCode.OK
    if codes.get(0) == ExitCode.INTERRUPTED and values <= {ExitCode.OK, ExitCode.INTERRUPTED}:
        return ExitCode.INTERRUPTED
    return ExitCode.CRASH


def read_codes(folder: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for path in folder.glob("rank-*"):
        try:
            out[int(path.name.split("-", 1)[1])] = int(path.read_text().strip())
        except (ValueError, OSError):
            continue
    return out


def _local_world(argv: list[str]) -> int | None:
    """Workers this node starts (from --nproc_per_node / --nproc-per-node), when it is a plain number."""
    for i, arg in enumerate(argv):
        for flag in ("--nproc_per_node", "--nproc-per-node"):
            if arg == flag and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            else:
                continue
            return int(value) if value.isdigit() else None
    return None


def main(argv: list[str] | None = None) -> int:
    configure_logging()  # plain lines: info on stdout, warnings and errors on stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    folder = Path(tempfile.mkdtemp(prefix="rarl-exit-"))
    os.environ[EXIT_CODE_DIR_ENV] = str(folder)
    os.environ.setdefault(SHUTDOWN_TIMEOUT_ENV, str(DEFAULT_SHUTDOWN_TIMEOUT_S))
    try:
        # deferred: cli imports this module (EXIT_CODE_DIR_ENV) and must start without torch
        from torch.distributed import run as torchrun

        try:
            torchrun.main(argv)
        except SystemExit as e:  # argparse errors and the like
            if e.code not in (0, None) and not read_codes(folder):
                return int(e.code) if isinstance(e.code, int) else ExitCode.CRASH
        except BaseException as e:
            if not read_codes(folder):
                log.error(f"rarl: launcher: {type(e).__name__}: {e}")
        # Workers record under their local rank: each node reports its own workers.
        return int(combine(read_codes(folder), _local_world(argv)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
