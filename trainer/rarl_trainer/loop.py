"""The run: stages in order (GRPO or SFT), evaluations, checkpoints, progress and the export.

One ``Run`` per process; under torchrun every rank runs the same code and only rank 0 writes
checkpoints, progress and exports. The parts, each made complete from explicit inputs:
``run_context.RunContext`` (job, ranks, folders, stop flag, progress), ``run_setup`` (checks, data,
model), ``checkpoint_session.CheckpointSession`` (store, uploads, resume), ``stages`` (one trainer
builder per stage kind, the run's callbacks), ``evaluator.Evaluator`` and ``run_export`` (gather,
unshard, export). ``Training`` holds what the stages train with; ``Run.execute`` calls them in order.
"""

from __future__ import annotations

import gc

from rarl.api.reports import Metrics
from rarl.api.vocabulary import ExitCode
from rarl_trainer.checkpoint_session import CheckpointSession
from rarl_trainer.checkpointing import Restored, load_stage_start_weights
from rarl_trainer.config import DistInfo, StagePlan, stage_plan
from rarl_trainer.evaluator import Evaluator
from rarl_trainer.models import LoadedModel
from rarl_trainer.reporting import check_trackers, make_reporter, send_progress, status_metrics
from rarl_trainer.run_context import RunContext
from rarl_trainer.run_export import export_model, gather_for_export, unshard_for_export
from rarl_trainer.run_setup import RunData, check_rollout_engine, check_sharding, load_data, load_run_model
from rarl_trainer.sharding import sharded
from rarl_trainer.signals import install_stop_handlers, interrupted_exit
from rarl_trainer.stages import StageTrainer, build_stage_trainer, needs_unshard, unshard
from rarl_trainer.weight_digest import write_weight_digest


class Training:
    """What a run's stages train with, loaded and opened (``set_up``): data, model, checkpoints, evaluator."""

    def __init__(self, ctx: RunContext, data: RunData, loaded: LoadedModel, session: CheckpointSession,
                 evaluator: Evaluator, reporter=None):
        self.ctx = ctx
        self.data = data
        self.loaded = loaded  # the model being trained (replaced by an unsharded copy where a stage needs one)
        self.session = session
        self.evaluator = evaluator
        self.reporter = reporter  # rank 0's ProgressReporter, or None: no reports

    @classmethod
    def set_up(cls, ctx: RunContext, resume: str = "auto", reporter=None) -> Training:
        """Every rank: the data and the model loaded, the checkpoint store opened (nothing resumed yet)."""
        data = load_data(ctx)
        loaded = load_run_model(ctx)
        session = CheckpointSession.open(ctx, resume)
        evaluator = Evaluator(ctx, data.eval_items, loaded.string_content, loaded.pixels)
        return cls(ctx, data, loaded, session, evaluator, reporter)

    def report(self, reward: float | None = None, eta: float | None = None, model_uri: str | None = None,
               message: str | None = None) -> None:
        ctx, progress = self.ctx, self.ctx.progress
        if not ctx.dist.is_main or self.reporter is None:
            return
        latest = self.session.latest_uri()
        if latest is not None:
            progress.latest_checkpoint = latest
        record = progress.record
        if reward is None:  # status.reward is the latest logged step's, also in reports between steps
            reward = next((h["reward"] for h in reversed(record.history) if "reward" in h), None)
        send_progress(self.reporter, stage=progress.stage, step=progress.step,
                      total_steps=ctx.spec.total_steps(), reward=reward, metrics=status_metrics(record.metrics),
                      latest_checkpoint=progress.latest_checkpoint, eta_seconds=eta, model_uri=model_uri,
                      message=message)

    def evaluate(self, label: str) -> Metrics:
        return self.evaluator.evaluate(self.loaded, label)

    def make_trainer(self, plan: StagePlan) -> StageTrainer:
        """``plan``'s stage trainer on the model as the previous stage left it, the run's callbacks on it."""
        if needs_unshard(self.ctx, plan, self.loaded):
            self.loaded = unshard(self.ctx, self.loaded)
            gc.collect()  # the sharded model and the last trainer's optimizer state
        return build_stage_trainer(self.ctx, self.loaded, self.data, plan, self.session, self.evaluate, self.report)


class Run:
    """Everything one trainer process does for a job, as a short sequence of calls (``execute``)."""

    def __init__(self, job, run_dir, resume: str = "auto", reporter=None, dist: DistInfo | None = None):
        self.ctx = RunContext.create(job, run_dir, dist)
        self.resume = resume
        self.reporter = reporter  # a given ProgressReporter (benchmarks), else rank 0 makes one in prepare

    @property
    def spec(self):
        return self.ctx.spec

    def set_up(self, reporter=None) -> Training:
        """Every rank: the data and the model loaded, the checkpoints opened (``Training.set_up``)."""
        return Training.set_up(self.ctx, self.resume, reporter if reporter is not None else self.reporter)

    def execute(self) -> ExitCode:
        reporter = self.prepare()
        training = self.set_up(reporter)
        restored = training.session.try_resume()
        training.report(message=f"resumed from checkpoint step {restored.step}" if restored else "started")
        code = self.run_stages(training, restored)
        if code != ExitCode.OK:
            return code
        return self.finish(training)

    def prepare(self):
        """Before anything loads: the run folder, the stop handlers, and what the machine must offer (a
        rollout engine that cannot run here, sharding without a process group, a tracker of
        ``spec.logging.reportTo`` that is not installed: each refused now). Returns rank 0's reporter
        (the one given, else a new one; None on the other ranks without one)."""
        ctx = self.ctx
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        install_stop_handlers(ctx.stop, announce=ctx.dist.is_main)
        reporter = self.reporter
        if reporter is None and ctx.dist.is_main:
            reporter = make_reporter(ctx.run_dir)
        check_rollout_engine(ctx.spec)  # an engine that cannot run here fails before anything loads
        check_sharding(ctx)
        check_trackers(ctx.spec)  # so does a tracker of spec.logging.reportTo that is not installed
        return reporter

    def run_stages(self, training: Training, restored: Restored | None) -> ExitCode:
        ctx, progress = self.ctx, self.ctx.progress
        plans = stage_plan(ctx.spec)
        start, resume_dir, rarl_state = 0, None, {}
        if restored is not None:
            rarl_state = restored.state.get("rarl") or {}
            # evaluations and reports before the loop (a re-export) are at the checkpoint's step and stage
            progress.step = int(restored.state.get("global_step") or 0)
            progress.stage = restored.state.get("stage_name") or progress.stage
            if restored.stage_complete:  # the next stage starts from these weights (all done: the export does)
                start = restored.stage_index + 1
                load_stage_start_weights(training.loaded.model, restored.path, sharded(ctx.spec))
            else:
                start, resume_dir = restored.stage_index, restored.path
        metrics = progress.record.metrics
        if metrics.baseline is None:
            progress.stage = plans[0].stage.name
            metrics.baseline = training.evaluate("baseline")
            training.report(message="baseline evaluated")
        for plan in plans[start:]:
            progress.stage = plan.stage.name
            progress.step = plan.offset + (restored.stage_step if resume_dir is not None else 0)
            stage = None  # the last stage's trainer and optimizer state can go before the next is built
            stage = training.make_trainer(plan)
            self.ensure_previous_end(training, plans, plan)
            sm = metrics.stage(plan.stage.name)
            if sm.start is None:
                prev = metrics.stages.get(plans[plan.index - 1].stage.name) if plan.index else None
                sm.start = (prev.end if prev is not None else None) or metrics.baseline
            if resume_dir is not None and hasattr(stage.trainer, "load_rarl_state"):
                stage.trainer.load_rarl_state(rarl_state)
            # Mid-stage: HF restores optimizer, scheduler, RNG and data position; our trainers restore the
            # exact weights, KL reference adapter included (weights.ExactCheckpointMixin).
            stage.trainer.train(resume_from_checkpoint=str(resume_dir) if resume_dir is not None else None)
            resume_dir = None
            if stage.checkpoints.stopped:
                return interrupted_exit(training.session.uploader, ctx.stop, ctx.dist,
                                        lambda msg: training.report(message=msg),
                                        ctx.spec.run_policy.collective_timeout_seconds)
            sm.end = training.evaluate(f"end of {plan.stage.name}")
            training.report(message=f"stage {plan.stage.name} done")
        self.ensure_previous_end(training, plans, None)
        return ExitCode.OK

    def ensure_previous_end(self, training: Training, plans: list[StagePlan], plan: StagePlan | None) -> None:
        """A resumed run may have checkpointed a finished stage before its end evaluation: run it now."""
        index = plan.index - 1 if plan is not None else len(plans) - 1
        if index < 0:
            return
        sm = self.ctx.progress.record.metrics.stage(plans[index].stage.name)
        if sm.end is None:
            sm.end = training.evaluate(f"end of {plans[index].stage.name}")

    def finish(self, training: Training) -> ExitCode:
        """After the last stage: the weight digest, the export's weights gathered (sharded), every rank leaving
        the process group, then rank 0 alone waits for its uploads and exports."""
        ctx = self.ctx
        write_weight_digest(training.loaded.model, ctx.dist.rank)
        if sharded(ctx.spec):  # the export's weights, gathered while every rank is still in the group
            gather_for_export(ctx, training.loaded)
        # The run's last collective: training and every evaluation are done on all ranks. What follows
        # (waiting for the last checkpoint upload, merging, writing and uploading the export) is rank 0's
        # alone and can take longer than the process-group timeout, so no rank waits for it in a
        # collective: every rank leaves the process group together now (with NCCL, destroying a
        # communicator is itself collective: pytorch#122358's shutdown notes), the others exit 0, and
        # rank 0's own exit code (1 when the export fails) makes the launcher's (entrypoint.combine).
        ctx.leave_process_group()
        training.session.finish()
        if not ctx.dist.is_main:
            return ExitCode.OK
        training.evaluator.close()
        if sharded(ctx.spec):
            training.loaded = unshard_for_export(ctx)
        export_model(ctx, training.loaded, training.report)
        training.session.upload_tensorboard()  # the end-of-run evaluation included
        if training.reporter is not None:
            training.reporter.close()
        return ExitCode.OK
