"""Suite-wide settings: no hub access, one compute thread per process, GPU-only tests skipped on machines without
CUDA, the heaviest files first (so parallel workers share them), and no trainer process from a test not marked
``slow`` (the fast tier, ``make test-fast``, leaves those out)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread in this process and every process it starts (trainers inherit the environment): the tiny
# models gain nothing from a second thread, and two processes side by side on two cores with two OpenMP threads
# each fight over them (measured here: two tiny trainer runs at once took 22.9 s with two threads each, 7.6 s
# with one; one run alone 7.8 s vs 7.6 s). Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# Tests send SIGINT (Ctrl-C) to the processes they start. A shell starts background jobs (``nohup make test &``)
# with SIGINT ignored, children inherit that and Python keeps it ignored; a handler here is reset to the
# default in every child at exec, so they see Ctrl-C as a user's terminal would send it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Test files that start many trainer processes, heaviest first. Under pytest-xdist (``--dist loadfile``, as
# ``make test`` runs it) each file goes whole to one worker, in this order, so the long ones start first and
# the short files fill in around them instead of one worker ending alone on a long file.
HEAVY_FILES = (
    "tests/trainer/test_fsdp.py",
    "tests/trainer/test_resume_exact.py",
    "tests/sdk/test_local_training.py",
    "tests/trainer/test_collectives.py",
    "tests/trainer/test_real_model.py",
)

# modules (``python -m``) of a process that trains or launches training: the trainer, its launcher, torchrun,
# the local runner
TRAINER_MODULES = ("rarl_trainer", "rarl_trainer.entrypoint", "torch.distributed.run", "rarl.backends.supervisor")


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _has_cuda():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the device machine)")
        for item in gpu_items:
            item.add_marker(skip)
    rank = {path: i for i, path in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep order


def _starts_training(args) -> bool:
    argv = [os.fsdecode(a) for a in ([args] if isinstance(args, (str, bytes, os.PathLike)) else args)]
    if any(flag == "-m" and module in TRAINER_MODULES for flag, module in itertools.pairwise(argv)):
        return True
    if argv and Path(argv[0]).name == "torchrun":
        return True
    return bool(argv) and Path(argv[0]).name == "rarlctl" and "run" in argv[1:] and "--help" not in argv


@pytest.fixture(autouse=True)
def _unmarked_tests_start_no_trainer(request, monkeypatch):
    """A test not marked ``slow`` that starts a trainer process fails at once, saying to mark it: the fast tier
    (``pytest -m "not slow"``) must stay free of training. (Training in-process is not caught here.)"""
    if request.node.get_closest_marker("slow"):
        return

    class NoTrainerPopen(subprocess.Popen):
        def __init__(self, args, *rest, **kwargs):
            if _starts_training(args):
                pytest.fail(f"{request.node.nodeid} starts a trainer process ({' '.join(map(str, args))[:200]}): "
                            "mark it @pytest.mark.slow", pytrace=False)
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", NoTrainerPopen)


RARLCTL = Path(sys.executable).with_name("rarlctl")


@dataclass
class Result:
    """What a ``rarlctl`` call returned."""

    code: int
    out: str
    err: str


@pytest.fixture
def rarlctl_proc():
    """Run the installed ``rarlctl`` console script as a subprocess."""

    def run(*args: str, stdin: bytes | None = None, cwd: Path | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run([str(RARLCTL), *args], input=stdin, capture_output=True, cwd=cwd, timeout=timeout, check=False,
                              env={**os.environ, "COLUMNS": "200", **(env or {})})
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return run
