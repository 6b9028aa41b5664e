"""The run: stages in order (GRPO or SFT), evaluations, checkpoints, progress and the export.

One ``Run`` per process; under torchrun every rank runs the same code and only rank 0 writes
checkpoints, progress and exports. Stage k+1 trains the very model object stage k left, so it
starts from stage k's weights (for LoRA: the same adapter keeps training, with a fresh optimizer).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from rarl.api.reports import Metrics
from rarl.api.rules import resume_decision
from rarl.api.settings import config_hash, training_settings
from rarl.api.vocabulary import ExitCode
from rarl_trainer.checkpointing import (
    NodeLayout,
    Restored,
    StopFlag,
    StoreCheckpointCallback,
    clean_dir,
    finish_uploads,
    load_stage_start_weights,
    node_layout,
    restore_for_resume,
    upload_tensorboard,
)
from rarl_trainer.config import ConfigError, DistInfo, StagePlan, stage_plan
from rarl_trainer.reporting import (
    TENSORBOARD_DIR,
    EvalWriter,
    RunCallback,
    RunRecord,
    check_trackers,
    make_reporter,
    point_tensorboard,
    send_progress,
    status_metrics,
)
from rarl_trainer.sharding import gather_to_files, load_gathered, mark_fsdp_managed, sharded
from rarl_trainer.signals import install_stop_handlers, interrupted_exit
from rarl_trainer.weight_digest import write_weight_digest


class StageCallback(TrainerCallback):
    """The stage loop's view of a stage: its current global step and the evaluations every ``evalEverySteps``."""

    def __init__(self, run: Run, plan: StagePlan):
        self.run = run
        self.plan = plan

    def on_step_end(self, args, state, control, **kwargs):
        run, plan = self.run, self.plan
        global_step = plan.offset + state.global_step
        run.current_step = global_step
        every = run.spec.grpo.eval_every_steps
        if every and global_step % every == 0 and state.global_step < plan.stage.steps:
            metrics = run.evaluate(f"step {global_step}")
            if run.dist.is_main:
                run.record.metrics.add_during(global_step, metrics)
        return control


class Run:
    """Everything one trainer process does for a job."""

    def __init__(self, job, run_dir: Path, resume: str = "auto", reporter=None, dist: DistInfo | None = None):
        self.job = job
        self.spec = job.spec
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.dist = dist or DistInfo.from_env()
        self.reporter = reporter  # rank 0's ProgressReporter (execute makes one when None)
        self.stop = StopFlag()
        self.record = RunRecord()  # evaluations, history, sample answers: continued on resume
        self.started = time.monotonic()
        self.seconds_before = 0.0  # training time of earlier attempts (from the checkpoint)
        self.latest_checkpoint: str | None = None
        self.current_stage: str | None = None
        self.current_step = 0
        self.config_hash = config_hash(self.spec)
        self.uploader = None  # rank 0's AsyncCheckpointUploader (open_checkpoints)
        self.layout = NodeLayout()  # a sharded run's nodes (open_checkpoints)
        self.part_uploader = None  # a part leader's uploader of its node's shards (checkpointing.NodeLayout)
        self.ckpt_store = None  # CheckpointStore (open_checkpoints)
        self.train_items: list | None = None  # load_data
        self.eval_items: list | None = None
        self.loaded = None  # models.LoadedModel (load_model)
        self.use_cpu = False
        self.bf16 = False
        self.run_callback: RunCallback | None = None  # the current stage's (benchmarks read its time)
        self._eval_table = None  # queries.QueryTable, built on first use
        self.tensorboard = "tensorboard" in self.spec.logging.report_to
        self.tensorboard_dir = self.run_dir / TENSORBOARD_DIR
        self._eval_writer: EvalWriter | None = None  # rank 0's eval/ scalars (tensorboard)

    # ------------------------------------------------------------------ helpers
    def barrier(self) -> None:
        if self.dist.distributed:
            import torch.distributed as dist

            dist.barrier()

    def leave_process_group(self) -> None:
        """The run's last collective: a barrier, then every rank destroys the process group (errors raise)."""
        if self.dist.distributed:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()

    def report(self, reward: float | None = None, eta: float | None = None, model_uri: str | None = None,
               message: str | None = None) -> None:
        if not self.dist.is_main or self.reporter is None:
            return
        if self.uploader is not None and self.uploader.last_completed is not None:
            self.latest_checkpoint = self.uploader.last_completed.uri
        if reward is None:  # status.reward is the latest logged step's, also in reports between steps
            reward = next((h["reward"] for h in reversed(self.record.history) if "reward" in h), None)
        send_progress(self.reporter, stage=self.current_stage, step=self.current_step,
                      total_steps=self.spec.total_steps(), reward=reward, metrics=status_metrics(self.record.metrics),
                      latest_checkpoint=self.latest_checkpoint, eta_seconds=eta, model_uri=model_uri,
                      message=message)

    # ------------------------------------------------------------------ setup
    def on_every_rank(self, fn) -> None:
        """Run ``fn`` (loading the data or the model: downloads) on every rank at once, then agree on errors.

        Why every rank, not rank 0 first: while one rank downloads (a 19 GB dataset, a model), the
        others must not wait in a collective, or the process-group timeout
        (``runPolicy.collectiveTimeoutSeconds``) ends the attempt, and every retry repeats it. The
        storage cache is per node and locks each download (``rarl.storage.cached_download``; the
        builtin datasets' manifests are written atomically, the synthetic images under a lock:
        ``data.loading``), so each node downloads once, its other ranks waiting on the file lock. The
        one collective comes after every rank's own I/O: it waits only as long as the slowest node's
        download takes beyond the others'. (Builtin models are the exception: ``load_model``.)

        A ConfigError on any rank is shared with every rank, so all exit 2 together with the same
        message (the lowest rank's).
        """
        error: str | None = None
        try:
            fn()
        except ConfigError as e:
            error = str(e)
        errors: list[str | None] = [error]
        if self.dist.distributed:
            import torch.distributed as dist

            errors = [None] * self.dist.world_size
            dist.all_gather_object(errors, error)
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise ConfigError(first)

    def load_data(self) -> None:
        from rarl_trainer.data import DataError, load_items

        def load() -> None:
            try:
                self.train_items = load_items(self.spec.dataset, "train", storage=self.spec.storage).items
                self.eval_items = load_items(self.spec.dataset, "eval", storage=self.spec.storage).items
            except DataError as e:
                raise ConfigError(f"dataset: {e}") from None

        self.on_every_rank(load)

    def device(self) -> str | None:
        """Where this rank's model lives: its GPU, or None (the CPU)."""
        import torch

        return f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else None

    def load_model(self) -> None:
        import torch

        from rarl.api.uri import builtin_name
        from rarl_trainer.models import ModelLoadError, load_model, resolve_dtype, resolve_model_path

        device = self.device()

        def build_builtin() -> None:
            # builtin:<name> is built on rank 0 first, the others waiting in on_every_rank's collective, so a
            # shared cache is built once (these builders run locally in seconds and download nothing). A
            # node with its own cache builds it again in load(): builtin_models builds in a child process
            # while a process group is up, since transformers then saves weights on global rank 0 only.
            if self.dist.is_main:
                try:
                    resolve_model_path(self.spec.model.base, self.spec.storage)
                except ModelLoadError as e:
                    raise ConfigError(f"model: {e}") from None

        def load() -> None:
            try:
                self.loaded = load_model(self.spec.model, self.spec.storage, device=device, seed=self.spec.grpo.seed)
            except ModelLoadError as e:
                raise ConfigError(f"model: {e}") from None

        if builtin_name(self.spec.model.base) is not None:
            self.on_every_rank(build_builtin)
        self.on_every_rank(load)
        if sharded(self.spec):
            mark_fsdp_managed(self.loaded.model)  # every generate, evaluations included, steps all ranks together
        self.use_cpu = not torch.cuda.is_available()
        self.bf16 = resolve_dtype(self.spec.model.dtype) == torch.bfloat16
        if self.spec.dataset.modality == "image" and not self.loaded.is_vlm:
            raise ConfigError(
                f"model: {self.spec.model.base} is a text model but dataset.modality is 'image'; "
                "use a vision-language model or a text dataset"
            )

    def eval_table(self):
        """The evaluation queries (queries.QueryTable), the same at every evaluation of the run."""
        from rarl_trainer.evaluation import run_eval_table

        if self._eval_table is None:
            self._eval_table = run_eval_table(self.spec, self.eval_items, self.loaded.string_content,
                                              self.loaded.pixels)
        return self._eval_table

    def evaluate(self, label: str) -> Metrics:
        from rarl_trainer.evaluation import evaluate_run, sample_rows

        metrics, rows = evaluate_run(self.loaded, self.eval_table(), self.spec, self.dist, label)
        self.record.eval_rows = rows
        if self.tensorboard and self.dist.is_main:
            if self._eval_writer is None:
                self._eval_writer = EvalWriter(self.tensorboard_dir / "eval")
            self._eval_writer.write(metrics, self.current_step)
        if label == "baseline" or label.startswith("end of"):
            self.record.samples[label] = sample_rows(rows)
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def upload_tensorboard(self) -> None:
        """Rank 0: the TensorBoard event files to ``<checkpoint.uri>/tensorboard/`` (with each checkpoint, at the end)."""
        if self.tensorboard and self.dist.is_main and self.ckpt_store is not None:
            upload_tensorboard(self.ckpt_store, self.tensorboard_dir)

    def open_checkpoints(self) -> None:
        from rarl.storage import AsyncCheckpointUploader, CheckpointStore

        self.ckpt_store = CheckpointStore(self.spec.checkpoint.uri, self.spec.storage)
        if self.dist.is_main:
            self.uploader = AsyncCheckpointUploader(self.ckpt_store, keep=self.spec.checkpoint.keep,
                                                    delete_local=True)
        if sharded(self.spec):  # each node's shards are on its own disk: its lowest rank uploads them
            self.layout = node_layout(self.dist, self.run_dir)
            if self.layout.leader:
                self.part_uploader = AsyncCheckpointUploader(self.ckpt_store, delete_local=True)

    def try_resume(self) -> Restored | None:
        if self.resume != "auto":
            if self.dist.is_main and self.ckpt_store.latest() is not None:
                print(f"rarl: warning: --resume never, but {self.spec.checkpoint.uri} already holds checkpoints; "
                      "they will be overwritten step by step", file=sys.stderr)
            return None
        restored = restore_for_resume(self.ckpt_store, self.run_dir / "resume", self.dist)
        if restored is None:
            return None
        restored = self.check_settings(restored)
        if restored is None:
            return None
        state = restored.state
        self.record = RunRecord.from_state(state)
        self.seconds_before = self.record.train_seconds or 0.0
        if self.dist.is_main:
            where = (f"the end of stage {state.get('stage_name')}" if restored.stage_complete
                     else f"stage {state.get('stage_name')}, step {restored.stage_step}")
            print(f"rarl: resuming from checkpoint step {restored.step} of {self.spec.total_steps()} ({where}) "
                  f"at {self.spec.checkpoint.uri}", flush=True)
        return restored

    def check_settings(self, restored: Restored) -> Restored | None:
        """A checkpoint belongs to one set of training settings: ``checkpoint.onSpecChange`` decides otherwise.

        Returns the checkpoint to resume, or None when the old checkpoints were deleted (restart).
        """
        state = restored.state  # its config_hash is there: checkpointing.read_state refuses a state without
        decision = resume_decision(self.spec, restored.step, state["config_hash"], state.get("training_settings"))
        where, what = decision.where, decision.what
        if decision.action == "refuse":
            raise ConfigError(decision.message)
        if decision.action == "resume":
            if decision.changed and self.dist.is_main:
                print(f"rarl: warning: {where} was written under other training settings ({what}); "
                      "continuing from it (checkpoint.onSpecChange: resume)", file=sys.stderr, flush=True)
            return restored
        if self.dist.is_main:
            deleted = self.ckpt_store.delete_all()
            print(f"rarl: {where} was written under other training settings ({what}): deleted its "
                  f"{len(deleted)} checkpoint folder(s) and starting from step 0 (checkpoint.onSpecChange: restart)",
                  file=sys.stderr, flush=True)
        self.barrier()
        return None

    def run_state(self, trainer, plan: StagePlan):
        def build(stage_step: int, complete: bool) -> dict[str, Any]:
            self.record.train_seconds = round(self.seconds_before + time.monotonic() - self.started, 1)
            return {
                "stage_index": plan.index,
                "stage_name": plan.stage.name,
                "stage_step": stage_step,
                "global_step": plan.offset + stage_step,
                "stage_complete": complete,
                "config_hash": self.config_hash,
                "training_settings": training_settings(self.spec, by_alias=True),
                **self.record.to_state(),
                "rarl": trainer.rarl_state() if hasattr(trainer, "rarl_state") else {},
            }

        return build

    # ------------------------------------------------------------------ stages
    def drop_reference_adapter(self) -> None:
        """TRL copies the adapter into a frozen "ref" adapter (the KL reference) per trainer; drop the old one."""
        model = self.loaded.model
        if hasattr(model, "peft_config") and "ref" in model.peft_config:
            model.delete_adapter("ref")
            model.set_adapter("default")

    def check_rollout_engine(self) -> str:
        """grpo.rolloutEngine resolved (auto -> merged); a vLLM engine that cannot run here is a ConfigError."""
        from rarl_trainer.rollout import RolloutEngineError, resolve_engine

        if not any(s.kind == "grpo" for s in self.spec.stages):
            return "trl"
        try:
            return resolve_engine(self.spec.grpo.rollout_engine, sharded=sharded(self.spec))
        except RolloutEngineError as e:
            raise ConfigError(str(e)) from None

    def check_sharding(self) -> None:
        """What ``model.sharding``/``cpuOffload`` need of the machine, refused before anything loads."""
        import torch

        if sharded(self.spec) and not self.dist.distributed:
            raise ConfigError("model.sharding is 'fsdp' but this run has one process (gpusPerNode GPUs were not all "
                              "there, or a CPU run): there is nothing to shard over; use sharding 'none'")
        if self.spec.model.cpu_offload and not torch.cuda.is_available():
            raise ConfigError("model.cpuOffload moves the FSDP shards from the GPUs to host memory, but this run has "
                              "no GPU (its shards are in host memory already): remove model.cpuOffload")

    def train_strata(self) -> list[int] | None:
        """Each training item's stratum under ``dataset.sampling: balanced[-per-step]`` (None: uniform sampling)."""
        if self.spec.dataset.sampling == "uniform":
            return None
        from rarl_trainer.prompts import balanced_strata

        return balanced_strata(self.train_items, self.spec.dataset.target)

    def train_table(self, stage, count: int, seed: int):
        """A stage's ``count`` training queries (queries.QueryTable), drawn as ``dataset.sampling`` says."""
        from rarl_trainer.queries import QueryTable, draw_queries

        spec = self.spec
        queries = draw_queries(self.train_items, stage.list_sizes, count, seed, self.train_strata(),
                               deal=spec.dataset.sampling == "balanced-per-step")
        return QueryTable(queries, spec.dataset, spec.dataset.modality, self.loaded.string_content, self.loaded.pixels)

    def unshard(self) -> None:
        """Every rank (collective): the sharded model replaced by a whole copy holding its trained tensors.

        Why: TRL's GRPOTrainer adds the KL reference adapter (LoRA, ``beta`` > 0) as a copy of the
        trained one, which it cannot do on a model already sharded by the previous stage. So that stage
        starts as a resumed run starts it: from the base model, loaded again, with the trained tensors
        copied in (one gathered at a time; the finished stage's reference adapter is dropped).
        """
        import gc

        from rarl_trainer.models import load_model
        from rarl_trainer.sharding import copy_gathered
        from rarl_trainer.weights import REFERENCE_ADAPTER

        copy = load_model(self.spec.model, self.spec.storage, device=self.device(), seed=self.spec.grpo.seed)
        copy_gathered(self.loaded.model, copy.model, skip_adapters=(REFERENCE_ADAPTER,))
        self.loaded = copy
        mark_fsdp_managed(copy.model)
        gc.collect()  # the sharded model and the last trainer's optimizer state

    def make_trainer(self, plan: StagePlan):
        from rarl_trainer.sharding import is_sharded_model

        stage, spec = plan.stage, self.spec
        if (stage.kind == "grpo" and spec.model.lora.enabled and spec.grpo.beta > 0
                and is_sharded_model(self.loaded.model)):
            self.unshard()
        self.drop_reference_adapter()
        out_dir = str(self.run_dir / "hf" / stage.name)
        seed = spec.grpo.seed * 1000 + plan.index
        if stage.kind == "sft":
            from rarl_trainer.sft import make_sft_trainer, queries_per_step

            count = stage.steps * queries_per_step(spec, self.dist.world_size, stage)
            table = self.train_table(stage, count, seed)
            trainer = make_sft_trainer(self.loaded, table, spec, stage, out_dir, world_size=self.dist.world_size,
                                       use_cpu=self.use_cpu, bf16=self.bf16, callbacks=[], is_main=self.dist.is_main)
        else:
            from trl import GRPOConfig

            from rarl_trainer.grpo import RARLGRPOTrainer, RewardTerms, grpo_config_kwargs, prompts_per_step
            from rarl_trainer.rewards import RewardConfig
            from rarl_trainer.rmo import RMOConfig
            from rarl_trainer.rollout import vllm_config_kwargs

            engine = self.check_rollout_engine()
            count = stage.steps * prompts_per_step(spec, self.dist.world_size, stage)
            table = self.train_table(stage, count, seed)
            reward_cfg = RewardConfig.from_spec(spec, stage)
            terms = RewardTerms(reward_cfg, spec.grpo.num_generations)
            args = GRPOConfig(
                output_dir=out_dir,
                **grpo_config_kwargs(spec, stage, world_size=self.dist.world_size, use_cpu=self.use_cpu,
                                     bf16=self.bf16, model=self.loaded.model),
                reward_weights=terms.weights(),
                generation_kwargs=self.loaded.generation_kwargs() or None,
                gradient_checkpointing=spec.model.gradient_checkpointing,
                **(vllm_config_kwargs() if engine == "vllm" else {}),
            )
            trainer = RARLGRPOTrainer(
                model=self.loaded.model,
                reward_funcs=terms.functions(),
                args=args,
                train_dataset=table.to_dataset(),
                processing_class=self.loaded.processor,
                reward_config=reward_cfg,
                rmo_config=RMOConfig.from_spec(stage.rmo, spec.dataset.target),
                rmo_seed=seed,
                rollout_engine=engine,
                max_prompt_length=spec.grpo.max_prompt_length,
                reward_terms=terms,
                reference_from_policy=plan.index > 0,
            )
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
        point_tensorboard(trainer, self.tensorboard_dir / stage.name, step_offset=plan.offset)
        self.run_callback = RunCallback(plan, spec.total_steps(), self.record, self.report, self.dist.is_main)
        trainer.add_callback(self.run_callback)
        trainer.add_callback(StageCallback(self, plan))
        ckpt_cb = StoreCheckpointCallback(self.uploader or self.part_uploader, plan, self.spec.checkpoint.every_steps,
                                          self.dist, self.stop, self.run_state(trainer, plan), self.config_hash,
                                          after_save=self.upload_tensorboard, layout=self.layout,
                                          parts_timeout=self.spec.run_policy.collective_timeout_seconds)
        trainer.add_callback(ckpt_cb)
        return trainer, ckpt_cb

    def run_stages(self, restored: Restored | None) -> ExitCode:
        plans = stage_plan(self.spec)
        start, resume_dir, rarl_state = 0, None, {}
        if restored is not None:
            rarl_state = restored.state.get("rarl") or {}
            # evaluations and reports before the loop (a re-export) are at the checkpoint's step and stage
            self.current_step = int(restored.state.get("global_step") or 0)
            self.current_stage = restored.state.get("stage_name") or self.current_stage
            if restored.stage_complete:  # the next stage starts from these weights (all done: the export does)
                start = restored.stage_index + 1
                load_stage_start_weights(self.loaded.model, restored.path, sharded(self.spec))
            else:
                start, resume_dir = restored.stage_index, restored.path
        metrics = self.record.metrics
        if metrics.baseline is None:
            self.current_stage = plans[0].stage.name
            metrics.baseline = self.evaluate("baseline")
            self.report(message="baseline evaluated")
        for plan in plans[start:]:
            self.current_stage = plan.stage.name
            self.current_step = plan.offset + (restored.stage_step if resume_dir is not None else 0)
            trainer = ckpt_cb = None  # the last stage's trainer and optimizer state can go before the next is built
            trainer, ckpt_cb = self.make_trainer(plan)
            self.ensure_previous_end(plans, plan)
            sm = metrics.stage(plan.stage.name)
            if sm.start is None:
                prev = metrics.stages.get(plans[plan.index - 1].stage.name) if plan.index else None
                sm.start = (prev.end if prev is not None else None) or metrics.baseline
            if resume_dir is not None and hasattr(trainer, "load_rarl_state"):
                trainer.load_rarl_state(rarl_state)
            # Mid-stage: HF restores optimizer, scheduler, RNG and data position; our trainers restore the
            # exact weights, KL reference adapter included (weights.ExactCheckpointMixin).
            trainer.train(resume_from_checkpoint=str(resume_dir) if resume_dir is not None else None)
            resume_dir = None
            if ckpt_cb.stopped:
                return interrupted_exit(self.uploader, self.stop, self.dist, lambda msg: self.report(message=msg),
                                        self.spec.run_policy.collective_timeout_seconds)
            sm.end = self.evaluate(f"end of {plan.stage.name}")
            self.report(message=f"stage {plan.stage.name} done")
        self.ensure_previous_end(plans, None)
        return ExitCode.OK

    def ensure_previous_end(self, plans: list[StagePlan], plan: StagePlan | None) -> None:
        """A resumed run may have checkpointed a finished stage before its end evaluation: run it now."""
        index = plan.index - 1 if plan is not None else len(plans) - 1
        if index < 0:
            return
        sm = self.record.metrics.stage(plans[index].stage.name)
        if sm.end is None:
            sm.end = self.evaluate(f"end of {plans[index].stage.name}")

    # ------------------------------------------------------------------ export
    def gather_for_export(self) -> None:
        """Every rank (collective): a sharded model's trained tensors, whole, into rank 0's local files.

        Full fine-tuning's are cast to the export's dtype (``model.dtype``) on the way; LoRA adapters
        keep theirs (float32) for the merge. TRL's KL reference adapter is not exported.
        """
        from rarl_trainer.weights import REFERENCE_ADAPTER

        dtype = None if self.spec.model.lora.enabled else self.loaded.dtype
        gather_to_files(self.loaded.model, self.run_dir / "gathered", self.dist.is_main,
                        skip_adapters=(REFERENCE_ADAPTER,), dtype=dtype)

    def unshard_for_export(self) -> None:
        """Rank 0, after the last collective: an unsharded copy of the model on the CPU holding the gathered tensors.

        Loaded like the training model (the frozen base of LoRA from ``model.base`` again), in the
        export's dtype, so host memory holds one copy of the model as exported and no GPU is used.
        """
        from rarl_trainer.models import load_model

        folder = self.run_dir / "gathered"
        copy = load_model(self.spec.model, self.spec.storage, device=None, seed=self.spec.grpo.seed,
                          master_weights=False)
        count = load_gathered(copy.model, folder)
        print(f"rarl: {count} gathered tensors loaded into an unsharded copy for the export", flush=True)
        self.loaded = copy
        clean_dir(folder)

    def export(self) -> str:
        """Rank 0, after the run's last collective: the model and reports, written and uploaded to ``output.uri``."""
        from rarl_trainer.export import RunSummary, export_run, write_metrics

        dest = self.run_dir / "export"
        clean_dir(dest)
        record = self.record
        record.metrics.final = record.metrics.latest()
        self.drop_reference_adapter()
        summary = RunSummary(self.job.name, self.spec, list(self.spec.grpo.eval_list_sizes), record.samples,
                             record.train_seconds)
        uri = export_run(self.loaded, dest, self.spec.output.uri, self.spec.storage, record.metrics,
                         record.history, record.eval_rows, summary, merge=self.spec.output.merge_adapter)
        write_metrics(self.run_dir / "metrics.json", record.metrics)
        self.current_step = self.spec.total_steps()
        self.report(model_uri=uri, message="exported")
        print(f"rarl: model exported to {uri}", flush=True)
        return uri

    # ------------------------------------------------------------------ main
    def execute(self) -> ExitCode:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        install_stop_handlers(self.stop, announce=self.dist.is_main)
        if self.reporter is None and self.dist.is_main:
            self.reporter = make_reporter(self.run_dir)
        self.check_rollout_engine()  # an engine that cannot run here fails before anything loads
        self.check_sharding()
        check_trackers(self.spec)  # so does a tracker of spec.logging.reportTo that is not installed
        self.load_data()
        self.load_model()
        self.open_checkpoints()
        restored = self.try_resume()
        self.report(message=f"resumed from checkpoint step {restored.step}" if restored else "started")
        code = self.run_stages(restored)
        if code != ExitCode.OK:
            return code
        write_weight_digest(self.loaded.model, self.dist.rank)
        if sharded(self.spec):  # the export's weights, gathered while every rank is still in the group
            self.gather_for_export()
        # The run's last collective: training and every evaluation are done on all ranks. What follows
        # (waiting for the last checkpoint upload, merging, writing and uploading the export) is rank 0's
        # alone and can take longer than the process-group timeout, so no rank waits for it in a
        # collective: every rank leaves the process group together now (with NCCL, destroying a
        # communicator is itself collective: pytorch#122358's shutdown notes), the others exit 0, and
        # rank 0's own exit code (1 when the export fails) makes the launcher's (entrypoint.combine).
        self.leave_process_group()
        if not self.dist.is_main:
            if not finish_uploads(self.part_uploader, None):  # rank 0's last checkpoint waits for this part
                print("rarl: warning: uploading this node's part of the last checkpoint failed", file=sys.stderr)
            return ExitCode.OK
        ok = finish_uploads(self.uploader, None)
        if not ok:
            print("rarl: warning: the last checkpoint upload failed", file=sys.stderr)
        if self._eval_writer is not None:
            self._eval_writer.close()
            self._eval_writer = None
        if sharded(self.spec):
            self.unshard_for_export()
        self.export()
        self.upload_tensorboard()  # the end-of-run evaluation included
        if self.reporter is not None:
            self.reporter.close()
        return ExitCode.OK

