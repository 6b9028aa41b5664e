"""Suite-wide settings: no hub access, GPU-only tests skipped on machines without CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
