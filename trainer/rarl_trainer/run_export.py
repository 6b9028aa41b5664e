"""A run's end: the trained weights gathered (sharded runs), then rank 0's export of the model and its reports."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rarl_trainer.checkpointing import clean_dir
from rarl_trainer.export import RunSummary, export_run, write_metrics
from rarl_trainer.models import LoadedModel, load_model
from rarl_trainer.run_context import RunContext
from rarl_trainer.sharding import gather_to_files, load_gathered
from rarl_trainer.stages import drop_reference_adapter
from rarl_trainer.weights import REFERENCE_ADAPTER

log = logging.getLogger(__name__)


def gather_for_export(ctx: RunContext, loaded: LoadedModel) -> None:
    """Every rank (collective): a sharded model's trained tensors, whole, into rank 0's local files.

    Full fine-tuning's are cast to the export's dtype (``model.dtype``) on the way; LoRA adapters
    keep theirs (float32) for the merge. TRL's KL reference adapter is not exported.
    """
    dtype = None if ctx.spec.model.lora.enabled else loaded.dtype
    gather_to_files(loaded.model, ctx.run_dir / "gathered", ctx.dist.is_main,
                    skip_adapters=(REFERENCE_ADAPTER,), dtype=dtype)


def unshard_for_export(ctx: RunContext) -> LoadedModel:
    """Rank 0, after the last collective: an unsharded copy of the model on the CPU holding the gathered tensors.

    Loaded like the training model (the frozen base of LoRA from ``model.base`` again), in the
    export's dtype, so host memory holds one copy of the model as exported and no GPU is used.
    """
    spec = ctx.spec
    folder = ctx.run_dir / "gathered"
    copy = load_model(spec.model, spec.storage, device=None, seed=spec.grpo.seed, master_weights=False)
    count = load_gathered(copy.model, folder)
    log.info(f"rarl: {count} gathered tensors loaded into an unsharded copy for the export")
    clean_dir(folder)
    return copy


def export_model(ctx: RunContext, loaded: LoadedModel, report: Callable[..., None]) -> str:
    """Rank 0, after the run's last collective: the model and reports, written and uploaded to ``output.uri``."""
    spec = ctx.spec
    dest = ctx.run_dir / "export"
    clean_dir(dest)
    record = ctx.progress.record
    record.metrics.final = record.metrics.latest()
    drop_reference_adapter(loaded.model)
    summary = RunSummary(ctx.job.name, spec, list(spec.grpo.eval_list_sizes), record.samples, record.train_seconds)
    uri = export_run(loaded, dest, spec.output.uri, spec.storage, record.metrics, record.history, record.eval_rows,
                     summary, merge=spec.output.merge_adapter)
    write_metrics(ctx.run_dir / "metrics.json", record.metrics)
    ctx.progress.step = spec.total_steps()
    report(model_uri=uri, message="exported")
    log.info(f"rarl: model exported to {uri}")
    return uri
