"""``python -m rarl_trainer --config job.yaml [--resume auto|never] [--run-dir DIR]``.

Exit codes are a contract with the operator (``rarl.api.vocabulary.ExitCode``):
0 success; 2 configuration or data error (one message on stderr and in /dev/termination-log, no
traceback); 3 interrupted (SIGTERM/SIGINT) after a successful checkpoint; anything else a crash.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import NoReturn

from rarl.api.vocabulary import ExitCode
from rarl_trainer import configure_logging
from rarl_trainer.config import ConfigError, DistInfo, init_distributed, load_job, shutdown_distributed
from rarl_trainer.entrypoint import EXIT_CODE_DIR_ENV

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rarl_trainer", description="Run a RARLJob's training stages.")
    p.add_argument("--config", required=True, help="RARLJob YAML (a full document or a bare spec)")
    p.add_argument("--resume", choices=["auto", "never"], default="auto",
                   help="auto: continue from the newest complete checkpoint; never: start fresh")
    p.add_argument("--run-dir", default=None, help="local working folder (default: .rarl/runs/<job name>)")
    return p.parse_args(argv)


def config_error(message: str) -> int:
    # deferred: reporting loads transformers; a config error is reported without it
    from rarl_trainer.reporting import write_termination_log

    log.error(f"rarl: configuration error: {message}")
    write_termination_log(message)
    return ExitCode.CONFIG


def quiet_libraries() -> None:
    """Keep rank logs to our plain progress lines (transformers' info/warnings are noise here)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    warnings.filterwarnings("ignore", category=UserWarning, module="trl")
    try:
        # deferred: CLI start-up (a bad config is reported first)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    try:
        import datasets  # deferred: CLI start-up (a bad config is reported first)

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def record_exit_code(code: int, dist_info: DistInfo) -> None:
    """Under ``rarl_trainer.entrypoint`` (torchrun), tell the launcher this worker's exit code."""
    folder = os.environ.get(EXIT_CODE_DIR_ENV)
    if folder:
        try:
            Path(folder, f"rank-{dist_info.local_rank}").write_text(str(int(code)))
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    configure_logging()  # plain lines: info on stdout, warnings and errors on stderr
    dist_info = DistInfo.from_env()
    code: int = ExitCode.CRASH
    try:
        code = _main(argv, dist_info)
    except SystemExit as e:  # argparse: a usage error is a configuration error
        code = e.code if isinstance(e.code, int) else ExitCode.CRASH
    finally:
        record_exit_code(code, dist_info)
    return code


def _main(argv: list[str] | None, dist_info: DistInfo) -> int:
    args = parse_args(argv)
    try:
        job = load_job(args.config)
    except ConfigError as e:
        return config_error(str(e))
    run_dir = Path(args.run_dir) if args.run_dir else Path(".rarl") / "runs" / job.name
    quiet_libraries()
    code: int = ExitCode.CRASH
    try:
        init_distributed(dist_info, job.spec.run_policy.collective_timeout_seconds)
        # deferred: torch/transformers/trl load only once the config is valid
        from rarl_trainer.loop import Run

        code = Run(job, run_dir, resume=args.resume, dist=dist_info).execute()
    except ConfigError as e:
        code = config_error(str(e))
    finally:
        shutdown_distributed()
    return code


def exit_process(code: int, dist_info: DistInfo) -> NoReturn:
    """End the process with ``code``. A rank of a distributed run (its process group already destroyed) skips
    the interpreter's teardown: tearing down torch's distributed C++ objects there can abort the process
    ("terminate called without an active exception", exit -6), and torchrun then fails a run that succeeded
    (seen in the FSDP tests with two ranks on two busy cores: rank 1 aborted after its work was done)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if dist_info.distributed:
        logging.shutdown()
        os._exit(int(code))
    sys.exit(code)


def entrypoint() -> None:
    exit_process(main(), DistInfo.from_env())
