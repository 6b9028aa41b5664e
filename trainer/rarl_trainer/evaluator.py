"""A run's evaluations: the same evaluation queries every time, their metrics recorded and written for TensorBoard."""

from __future__ import annotations

from functools import cached_property

from rarl.api.reports import Metrics
from rarl_trainer.evaluation import evaluate_run, run_eval_table, sample_rows
from rarl_trainer.queries import QueryTable
from rarl_trainer.reporting import EvalWriter
from rarl_trainer.run_context import RunContext


class Evaluator:
    """Evaluates the model being trained on the run's evaluation queries (every rank: collective when sharded)."""

    def __init__(self, ctx: RunContext, eval_items: list, string_content: bool, pixels=None):
        self.ctx = ctx
        self.eval_items = eval_items
        self.string_content = string_content  # the model's chat template wants string contents
        self.pixels = pixels  # the model's data.PixelBudget, or None
        self.writer: EvalWriter | None = None  # rank 0's eval/ scalars (tensorboard), opened at the first write

    @cached_property
    def table(self) -> QueryTable:
        """The evaluation queries, the same at every evaluation of the run (built at the first use)."""
        return run_eval_table(self.ctx.spec, self.eval_items, self.string_content, self.pixels)

    def evaluate(self, loaded, label: str) -> Metrics:
        """``loaded``'s metrics on the evaluation queries; its answers go to the run's record."""
        ctx = self.ctx
        record = ctx.progress.record
        metrics, rows = evaluate_run(loaded, self.table, ctx.spec, ctx.dist, label)
        record.eval_rows = rows
        if ctx.tensorboard and ctx.dist.is_main:
            if self.writer is None:
                self.writer = EvalWriter(ctx.tensorboard_dir / "eval")
            self.writer.write(metrics, ctx.progress.step)
        if label == "baseline" or label.startswith("end of"):
            record.samples[label] = sample_rows(rows)
        return metrics

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
