"""Reading the job, the run's distributed context, and the error that means "exit code 2".

The trainer reads the same pydantic spec as everything else (``rarl.api``): a full RARLJob
document (what the operator mounts) or a bare ``spec`` mapping (handy for local runs).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rarl.api.validation import parse_job
from rarl.errors import InvalidSpec

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from rarl.api.types import RARLJob, RARLJobSpec, StageSpec


class ConfigError(Exception):
    """A configuration or data problem the user must fix; the trainer exits ``ExitCode.CONFIG`` with this message."""


def load_job(path: str | Path) -> RARLJob:
    """The RARLJob in ``path`` (a full document, or a bare spec mapping); ConfigError when invalid."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if isinstance(doc, dict) and "spec" not in doc and "model" in doc:
        doc = {"apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": "local"}, "spec": doc}
    try:
        return parse_job(doc, origin=str(path))
    except InvalidSpec as e:
        raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class StagePlan:
    """A stage with its index and the global step it starts after."""

    index: int
    stage: StageSpec
    offset: int

    @property
    def end(self) -> int:
        return self.offset + self.stage.steps


def stage_plan(spec: RARLJobSpec) -> list[StagePlan]:
    out, offset = [], 0
    for i, stage in enumerate(spec.stages):
        out.append(StagePlan(i, stage, offset))
        offset += stage.steps
    return out


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a torchrun launch (one process when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DistInfo:
        env = dict(os.environ if env is None else env)
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def init_distributed(dist_info: DistInfo, timeout_seconds: int) -> None:
    """Start the process group torchrun asked for: NCCL on GPUs, gloo on CPU.

    ``timeout_seconds`` is the job's ``spec.runPolicy.collectiveTimeoutSeconds``: how long a rank
    waits in a collective before the attempt fails (torch's own default for NCCL is 10 minutes).
    Both backends get it: gloo enforces it too (measured with torch 2.13.0: a
    gloo broadcast under a 5 s timeout failed after 5.0 s, "Timed out waiting 5000ms for recv").
    """
    if not dist_info.distributed:
        return

    # deferred: the CLI imports this module; a bad config is reported before torch loads
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    timeout = timedelta(seconds=timeout_seconds)
    if torch.cuda.is_available():
        torch.cuda.set_device(dist_info.local_rank)
        dist.init_process_group(backend="nccl", timeout=timeout)
    else:
        dist.init_process_group(backend="gloo", timeout=timeout)


TRANSFER_DELAY_ENV = "RARL_TEST_TRANSFER_DELAY"
"""Test seam, ``<kind>=<seconds>[,<kind>=<seconds>...]`` with kinds ``download`` (a dataset location),
``restore`` (the checkpoint a resumed run starts from) and ``upload`` (the final export): each such
transfer takes that many extra seconds. Only tests/trainer/test_collectives.py sets it, to make one
rank's download or upload outlast a short collective timeout; an environment variable because the
test reaches the trainer through torchrun subprocesses."""


def transfer_progress(kind: str):
    """The ``progress`` callback for a ``rarl.storage`` transfer of ``kind``: None, or with
    ``$RARL_TEST_TRANSFER_DELAY`` naming ``kind``, one that sleeps that long on its first call (a
    transfer calls it only when bytes move: a cache hit is not slowed)."""
    delays = {}
    for part in filter(None, os.environ.get(TRANSFER_DELAY_ENV, "").split(",")):
        name, _, seconds = part.partition("=")
        delays[name.strip()] = float(seconds)
    if kind not in delays:
        return None
    delay = delays[kind]
    lock, slept = threading.Lock(), []

    def progress(_nbytes: int) -> None:
        with lock:  # transfers call it from several threads; one sleep per transfer
            if not slept:
                slept.append(True)
                log.warning(f"rarl: test seam: {kind} delayed {delay:g} s")
                time.sleep(delay)

    return progress


def shutdown_distributed() -> None:
    """destroy_process_group() so ranks exit cleanly (an abort at interpreter exit otherwise)."""
    try:
        import torch.distributed as dist  # deferred: as in init_distributed (CLI start-up)

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass


def json_default(obj: Any) -> Any:
    """JSON for numpy scalars and paths in metrics files."""
    try:
        # deferred: the CLI imports this module and reports a bad config without loading numpy
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
