"""What every part of a run reads: the job, this process's ranks, the run's folder, the stop flag and the progress.

``RunContext`` is made once per process (``RunContext.create``) and does not change; ``RunProgress`` is the one
part of it that does: the record checkpoints carry and where the run is, for the progress reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist

from rarl.api.settings import config_hash
from rarl_trainer.checkpointing import StopFlag
from rarl_trainer.config import ConfigError, DistInfo
from rarl_trainer.models import resolve_dtype
from rarl_trainer.reporting import TENSORBOARD_DIR, RunRecord


@dataclass
class RunProgress:
    """Where the run is: its record (evaluations, history, sample answers: continued on resume), stage and step."""

    record: RunRecord = field(default_factory=RunRecord)
    seconds_before: float = 0.0  # training time of earlier attempts (from the checkpoint)
    stage: str | None = None
    step: int = 0
    latest_checkpoint: str | None = None

    def resume_from(self, state: dict[str, Any]) -> None:
        """A checkpoint's record continued: its evaluations, history and training time."""
        self.record = RunRecord.from_state(state)
        self.seconds_before = self.record.train_seconds or 0.0


@dataclass(frozen=True)
class RunContext:
    """The inputs every part of one trainer process reads (``create`` makes it)."""

    job: Any
    run_dir: Path
    dist: DistInfo
    stop: StopFlag
    progress: RunProgress
    config_hash: str
    started: float  # time.monotonic() when the process's run began
    use_cpu: bool  # no GPU here: the trainers run on the CPU
    bf16: bool  # model.dtype resolves to bfloat16

    @classmethod
    def create(cls, job, run_dir: Path, dist: DistInfo | None = None) -> RunContext:
        return cls(job=job, run_dir=Path(run_dir), dist=dist or DistInfo.from_env(), stop=StopFlag(),
                   progress=RunProgress(), config_hash=config_hash(job.spec), started=time.monotonic(),
                   use_cpu=not torch.cuda.is_available(),
                   bf16=resolve_dtype(job.spec.model.dtype) == torch.bfloat16)

    @property
    def spec(self):
        return self.job.spec

    @property
    def tensorboard(self) -> bool:
        return "tensorboard" in self.spec.logging.report_to

    @property
    def tensorboard_dir(self) -> Path:
        return self.run_dir / TENSORBOARD_DIR

    def device(self) -> str | None:
        """Where this rank's model lives: its GPU, or None (the CPU)."""
        return f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else None

    def train_seconds(self) -> float:
        """Training time of all attempts so far, this one included."""
        return round(self.progress.seconds_before + time.monotonic() - self.started, 1)

    def barrier(self) -> None:
        if self.dist.distributed:
            torch_dist.barrier()

    def leave_process_group(self) -> None:
        """The run's last collective: a barrier, then every rank destroys the process group (errors raise)."""
        if self.dist.distributed:
            torch_dist.barrier()
            torch_dist.destroy_process_group()

    def on_every_rank(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (loading the data or the model: downloads) on every rank at once, then agree on errors.

        Why every rank, not rank 0 first: while one rank downloads (a 19 GB dataset, a model), the
        others must not wait in a collective, or the process-group timeout
        (``runPolicy.collectiveTimeoutSeconds``) ends the attempt, and every retry repeats it. The
        storage cache is per node and locks each download (``rarl.storage.cached_download``; the
        builtin datasets' manifests are written atomically, the synthetic images under a lock:
        ``data.loading``), so each node downloads once, its other ranks waiting on the file lock. The
        one collective comes after every rank's own I/O: it waits only as long as the slowest node's
        download takes beyond the others'. (Builtin models are the exception: ``run_setup.load_run_model``.)

        A ConfigError on any rank is shared with every rank, so all exit 2 together with the same
        message (the lowest rank's). Returns what ``fn`` returned.
        """
        error: str | None = None
        result = None
        try:
            result = fn()
        except ConfigError as e:
            error = str(e)
        errors: list[str | None] = [error]
        if self.dist.distributed:
            errors = [None] * self.dist.world_size
            torch_dist.all_gather_object(errors, error)
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise ConfigError(first)
        return result
