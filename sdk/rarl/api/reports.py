"""The files a run writes for others to read: ``metrics.json`` and ``progress.json``.

The trainer writes them through these models and every reader (the local backend, ``rarlctl``, the
Kubernetes status reporter) reads them through these models, so a key is named in one place.
A flat metrics dict (``Metrics``) has the keys of ``rarl.metrics.evaluate``, finite values only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Metrics = dict[str, float]
"""One evaluation: ``rarl.metrics.evaluate``'s keys (``n1/mae``, ``n2/tau``, ``invalid_rate``...), finite values."""


class EvalAtStep(BaseModel):
    """An evaluation during a stage (``grpo.evalEverySteps``): its global step and its metrics, in one flat object."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, float] = Field(init=False)

    global_step: int

    def metrics(self) -> Metrics:
        return dict(self.__pydantic_extra__ or {})


class StageMetrics(BaseModel):
    """A stage's evaluations: before its first step (the previous stage's end or the baseline) and after its last."""

    start: Metrics | None = None
    end: Metrics | None = None


class RunMetrics(BaseModel):
    """``metrics.json``: every evaluation of a run; the trainer also keeps it in its checkpoints.

    Absent keys are evaluations that have not happened yet (``final`` is written by the export).
    """

    baseline: Metrics | None = None
    """The model before training."""
    stages: dict[str, StageMetrics] = Field(default_factory=dict)
    """Per stage, in training order."""
    during: list[EvalAtStep] | None = None
    """Evaluations inside stages, by global step (only with ``grpo.evalEverySteps``)."""
    final: Metrics | None = None
    """The model that was exported: the last stage's end (the baseline for a run without stages' ends)."""

    def latest(self) -> Metrics:
        """The newest stage end, else the baseline."""
        latest = self.baseline or {}
        for stage in self.stages.values():
            if stage.end:
                latest = stage.end
        return dict(latest)

    def stage(self, name: str) -> StageMetrics:
        """Stage ``name``'s entry, created empty on first use."""
        return self.stages.setdefault(name, StageMetrics())

    def add_during(self, global_step: int, metrics: Metrics) -> None:
        if self.during is None:
            self.during = []
        self.during.append(EvalAtStep(global_step=global_step, **metrics))

    def to_json(self) -> dict[str, Any]:
        """The JSON document (evaluations not yet made are left out)."""
        return self.model_dump(mode="json", exclude_none=True)


def read_run_metrics(path: Path) -> RunMetrics | None:
    """The ``metrics.json`` at ``path``, or None when it is missing or not a metrics file."""
    try:
        return RunMetrics.model_validate(json.loads(Path(path).read_text()))
    except (OSError, ValueError):
        return None


class Progress(BaseModel):
    """``progress.json``: one snapshot of a run's progress (fields named as in RARLJobStatus, snake_case).

    The local backend and ``rarlctl`` read it from the run folder; in a cluster the same snapshot
    becomes a patch of the RARLJob's status. Unknown keys are ignored when reading.
    """

    model_config = ConfigDict(extra="ignore")

    stage: str | None = None
    step: int = 0
    total_steps: int = 0
    reward: float | None = None
    metrics: Metrics = Field(default_factory=dict)
    """A few of the latest evaluation's metrics (those shown in the job's status)."""
    latest_checkpoint: str | None = None
    eta_seconds: float | None = None
    model_uri: str | None = None
    message: str | None = None
    updated_at: float = Field(default_factory=time.time)
    """Unix time of the snapshot."""
