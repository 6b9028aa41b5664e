"""What a run tells the outside while it trains: progress reports, per-step history, its last words.

Rank 0 sends progress to a ``ProgressReporter`` (progress.json locally, the RARLJob's status in a
cluster), prints one line per logged step and keeps the run's record (evaluations, history, sample
answers) that checkpoints carry and the export turns into metrics.json and REPORT.md.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from rarl.api.reports import Metrics, Progress, RunMetrics
from rarl.api.vocabulary import ENV_JOB_NAME, ENV_JOB_NAMESPACE, ENV_TERMINATION_LOG
from rarl.progress import FileProgressReporter, ProgressReporter
from rarl_trainer.config import ConfigError, StagePlan

log = logging.getLogger(__name__)

HISTORY_KEYS = ("loss", "grad_norm", "learning_rate", "reward", "reward_std", "entropy", "kl", "step_time",
                "frac_reward_zero_std", "completions/mean_length", "completions/clipped_ratio")

STATUS_METRIC_KEYS = ("n1/mae", "n1/acc", "n1/srcc", "n1/plcc", "invalid_rate")
"""The metrics a progress report carries (with every ``nK/tau``); the rest stay in metrics.json."""

TERMINATION_LOG_DEFAULT = "/dev/termination-log"


def make_reporter(run_dir: Path) -> ProgressReporter:
    """The Kubernetes status reporter inside a cluster job, else progress.json in the run folder."""
    name, ns = os.environ.get(ENV_JOB_NAME), os.environ.get(ENV_JOB_NAMESPACE)
    if name and ns and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            # deferred: only in a pod (the kubernetes client is slow to import)
            from rarl.progress_k8s import KubernetesStatusReporter

            return KubernetesStatusReporter(name, ns)
        except Exception as e:
            log.warning(f"rarl: Kubernetes status reporting unavailable ({e}); writing progress.json")
    return FileProgressReporter(run_dir / "progress.json")


def history_key(key: str) -> bool:
    """Per-step figures kept in history.json and checkpoints (the rest of TRL's log is dropped)."""
    return key in HISTORY_KEYS or key.startswith(("rarl/", "rewards/"))


def status_metrics(metrics: RunMetrics) -> Metrics:
    """The latest evaluation's metrics that a progress report carries."""
    return {k: v for k, v in metrics.latest().items() if k in STATUS_METRIC_KEYS or k.endswith("/tau")}


def send_progress(reporter: ProgressReporter, **fields: Any) -> None:
    """Report a ``Progress`` of ``fields``; a failure is logged, never raised into training."""
    try:
        reporter.report(Progress(**fields))
    except Exception as e:
        log.warning(f"rarl: progress report failed: {e}")


@dataclass
class RunRecord:
    """What a run has recorded so far; checkpoints carry it so a resumed run continues it."""

    metrics: RunMetrics = field(default_factory=RunMetrics)
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per logged step (history_key)
    eval_rows: list[dict[str, Any]] = field(default_factory=list)  # the last evaluation's answers
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # a few answers per evaluation
    train_seconds: float | None = None  # all attempts, up to the newest checkpoint

    def to_state(self) -> dict[str, Any]:
        """The record's part of a checkpoint's state file."""
        return {"metrics": self.metrics.to_json(), "history": self.history, "eval_rows": self.eval_rows,
                "samples": self.samples, "train_seconds": self.train_seconds}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunRecord:
        metrics = state.get("metrics")
        return cls(metrics=RunMetrics.model_validate(metrics) if metrics else RunMetrics(),
                   history=state.get("history") or [], eval_rows=state.get("eval_rows") or [],
                   samples=state.get("samples") or {}, train_seconds=state.get("train_seconds"))


class RunCallback(TrainerCallback):
    """Per logged step (rank 0): a history row, a plain progress line and a progress report."""

    def __init__(self, plan: StagePlan, total_steps: int, record: RunRecord,
                 report: Callable[..., None], is_main: bool):
        self.plan = plan
        self.total_steps = total_steps
        self.record = record
        self.report = report  # loop.Training.report(reward=..., eta=...)
        self.is_main = is_main
        self.t0 = time.monotonic()
        self.start_step: int | None = None
        self.seconds = 0.0  # time spent in logging/progress (benchmarks report it)

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.monotonic()
        self.start_step = state.global_step

    def eta(self, stage_step: int) -> float | None:
        done = stage_step - (self.start_step or 0)
        if done <= 0:
            return None
        per_step = (time.monotonic() - self.t0) / done
        return per_step * (self.total_steps - (self.plan.offset + stage_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        t0 = time.perf_counter()
        try:
            self._on_log(state, logs)
        finally:
            self.seconds += time.perf_counter() - t0

    def _on_log(self, state, logs) -> None:
        if not logs or ("loss" not in logs and "reward" not in logs):
            return
        global_step = self.plan.offset + state.global_step
        row = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and history_key(k)}
        row.update(global_step=global_step, stage=self.plan.stage.name, stage_step=state.global_step)
        if not self.is_main:
            return
        self.record.history.append(row)
        eta = self.eta(state.global_step)
        self.report(reward=row.get("reward"), eta=eta)
        parts = [f"[{self.plan.stage.name}] step {global_step}/{self.total_steps}"]
        if "reward" in row:
            parts.append(f"reward {row['reward']:.3f}")
            terms = [f"{t[:3]} {row.get(f'rewards/{t}/mean', float('nan')):.2f}"
                     for t in ("format", "regression", "ranking")]
            parts.append("(" + " ".join(terms) + ")")
            parts.append(f"mut {row.get('rarl/mutation_rate', 0.0):.2f}")
            if "rarl/bias" in row:  # drift diagnostics (drift module): a recipe that collapses shows here first
                parts.append(f"bias {row['rarl/bias']:+.2f}")
            if "rarl/spread_ratio" in row:
                parts.append(f"spread {row['rarl/spread_ratio']:.2f}")
        if "loss" in row:
            parts.append(f"loss {row['loss']:.4f}")
        if eta is not None:
            parts.append(f"eta {eta:.0f}s")
        log.info(" ".join(parts))


def write_termination_log(message: str, path: str | None = None) -> None:
    """Kubernetes shows this file as the container's termination message; written only where it exists."""
    path = path or os.environ.get(ENV_TERMINATION_LOG, TERMINATION_LOG_DEFAULT)
    try:
        if os.path.isfile(path) and os.access(path, os.W_OK):
            with open(path, "w") as fh:
                fh.write(message[:4000])
    except OSError:
        pass


# --------------------------------------------------------------------------- training dashboards

TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
"""``spec.logging.reportTo`` names -> the module that must import for transformers' integration."""

TENSORBOARD_DIR = "tensorboard"
"""``<run dir>/tensorboard/``: one folder per stage (HF's per-step logs) and ``eval/`` (every evaluation)."""


def trackers(spec) -> list[str]:
    """The trackers of ``spec.logging.reportTo`` ([] for [none])."""
    return [t for t in spec.logging.report_to if t != "none"]


def check_trackers(spec) -> None:
    """Every tracker in ``spec.logging.reportTo`` importable here, else a ConfigError (exit 2): no silent fallback."""
    missing = [t for t in trackers(spec) if importlib.util.find_spec(TRACKER_MODULES[t]) is None]
    if missing:
        raise ConfigError(
            f"spec.logging.reportTo: {', '.join(missing)} is not installed in the trainer's environment "
            f"(pip install {' '.join(TRACKER_MODULES[t] for t in missing)}, or remove it from reportTo)"
        )


def point_tensorboard(trainer, folder: Path, step_offset: int = 0) -> None:
    """The trainer's TensorBoard callback writes into ``folder`` (transformers would pick ``output_dir/runs``), at the
    run's global step: each stage's trainer counts its own steps from 1, ``step_offset`` is the steps before it, so a
    stage's curves continue the previous stage's and share the axis of ``eval/`` (``EvalWriter``)."""
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback):
            cb.logging_dir = str(folder)
            if step_offset:
                cb.__class__ = _global_step_callback(type(cb))
                cb.rarl_step_offset = step_offset


def _global_step_callback(base: type) -> type:
    """``base`` (transformers' TensorBoardCallback) logging at ``state.global_step + rarl_step_offset``."""
    class GlobalStepTensorBoardCallback(base):  # type: ignore[valid-type, misc]
        rarl_step_offset = 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            shifted = dataclasses.replace(state, global_step=state.global_step + self.rarl_step_offset)
            return super().on_log(args, shifted, control, logs=logs, **kwargs)

    return GlobalStepTensorBoardCallback


class EvalWriter:
    """Every evaluation's metrics as TensorBoard scalars ``eval/<metric>`` at the run's global step (rank 0)."""

    def __init__(self, folder: Path):
        # deferred: needs the tensorboard package, only when reportTo has it
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    def write(self, metrics: Metrics, global_step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"eval/{key}", float(value), global_step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
