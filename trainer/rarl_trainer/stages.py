"""One trainer per stage: a builder per stage kind (SFT, GRPO), and the callbacks every stage's trainer carries.

Stage k+1 trains the very model object stage k left, so it starts from stage k's weights (for LoRA: the
same adapter keeps training, with a fresh optimizer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import GRPOConfig

from rarl.api.reports import Metrics
from rarl_trainer.checkpoint_session import CheckpointSession
from rarl_trainer.checkpointing import StoreCheckpointCallback
from rarl_trainer.config import StagePlan
from rarl_trainer.grpo import RARLGRPOTrainer, RewardTerms, grpo_config_kwargs, prompts_per_step
from rarl_trainer.models import LoadedModel, load_model
from rarl_trainer.queries import QueryTable, draw_queries
from rarl_trainer.reporting import RunCallback, point_tensorboard
from rarl_trainer.rewards import RewardConfig
from rarl_trainer.rmo import RMOConfig
from rarl_trainer.rollout import vllm_config_kwargs
from rarl_trainer.run_context import RunContext
from rarl_trainer.run_setup import RunData, check_rollout_engine
from rarl_trainer.sft import make_sft_trainer, queries_per_step
from rarl_trainer.sharding import copy_gathered, is_sharded_model, mark_fsdp_managed
from rarl_trainer.weights import REFERENCE_ADAPTER


@dataclass
class StageTrainer:
    """A stage's trainer and the run's callbacks on it."""

    trainer: object
    checkpoints: StoreCheckpointCallback  # its saves (``stopped`` after a stop signal)
    run_callback: RunCallback  # its progress lines and reports (benchmarks read its time)


class StageCallback(TrainerCallback):
    """The stage loop's view of a stage: its current global step and the evaluations every ``evalEverySteps``."""

    def __init__(self, ctx: RunContext, plan: StagePlan, evaluate: Callable[[str], Metrics]):
        self.ctx = ctx
        self.plan = plan
        self.evaluate = evaluate

    def on_step_end(self, args, state, control, **kwargs):
        ctx, plan = self.ctx, self.plan
        global_step = plan.offset + state.global_step
        ctx.progress.step = global_step
        every = ctx.spec.grpo.eval_every_steps
        if every and global_step % every == 0 and state.global_step < plan.stage.steps:
            metrics = self.evaluate(f"step {global_step}")
            if ctx.dist.is_main:
                ctx.progress.record.metrics.add_during(global_step, metrics)
        return control


# ---------------------------------------------------------------------- the model between stages
def drop_reference_adapter(model) -> None:
    """TRL copies the adapter into a frozen "ref" adapter (the KL reference) per trainer; drop the old one."""
    if hasattr(model, "peft_config") and "ref" in model.peft_config:
        model.delete_adapter("ref")
        model.set_adapter("default")


def needs_unshard(ctx: RunContext, plan: StagePlan, loaded: LoadedModel) -> bool:
    """A GRPO stage with a KL reference adapter (LoRA, ``beta`` > 0) after a stage that sharded the model."""
    spec = ctx.spec
    return (plan.stage.kind == "grpo" and spec.model.lora.enabled and spec.grpo.beta > 0
            and is_sharded_model(loaded.model))


def unshard(ctx: RunContext, loaded: LoadedModel) -> LoadedModel:
    """Every rank (collective): a whole copy of the sharded model ``loaded``, holding its trained tensors.

    Why: TRL's GRPOTrainer adds the KL reference adapter (LoRA, ``beta`` > 0) as a copy of the
    trained one, which it cannot do on a model already sharded by the previous stage. So that stage
    starts as a resumed run starts it: from the base model, loaded again, with the trained tensors
    copied in (one gathered at a time; the finished stage's reference adapter is dropped).
    """
    spec = ctx.spec
    copy = load_model(spec.model, spec.storage, device=ctx.device(), seed=spec.grpo.seed)
    copy_gathered(loaded.model, copy.model, skip_adapters=(REFERENCE_ADAPTER,))
    mark_fsdp_managed(copy.model)
    return copy


# ---------------------------------------------------------------------- builders
def train_table(ctx: RunContext, data: RunData, loaded: LoadedModel, stage, count: int, seed: int) -> QueryTable:
    """A stage's ``count`` training queries, drawn as ``dataset.sampling`` says."""
    spec = ctx.spec
    queries = draw_queries(data.train_items, stage.list_sizes, count, seed, data.strata,
                           deal=spec.dataset.sampling == "balanced-per-step")
    return QueryTable(queries, spec.dataset, spec.dataset.modality, loaded.string_content, loaded.pixels)


def stage_out_dir(ctx: RunContext, plan: StagePlan) -> str:
    return str(ctx.run_dir / "hf" / plan.stage.name)


def stage_seed(ctx: RunContext, plan: StagePlan) -> int:
    return ctx.spec.grpo.seed * 1000 + plan.index


def build_sft_trainer(ctx: RunContext, loaded: LoadedModel, data: RunData, plan: StagePlan):
    """An SFT stage's trainer on its reference answers."""
    stage, spec, world = plan.stage, ctx.spec, ctx.dist.world_size
    count = stage.steps * queries_per_step(spec, world, stage)
    table = train_table(ctx, data, loaded, stage, count, stage_seed(ctx, plan))
    return make_sft_trainer(loaded, table, spec, stage, stage_out_dir(ctx, plan), world_size=world,
                            use_cpu=ctx.use_cpu, bf16=ctx.bf16, callbacks=[], is_main=ctx.dist.is_main)


def build_grpo_trainer(ctx: RunContext, loaded: LoadedModel, data: RunData, plan: StagePlan) -> RARLGRPOTrainer:
    """A GRPO stage's trainer: rewards, RMO and the rollout engine as the stage and ``grpo`` say."""
    stage, spec, world = plan.stage, ctx.spec, ctx.dist.world_size
    seed = stage_seed(ctx, plan)
    engine = check_rollout_engine(spec)
    count = stage.steps * prompts_per_step(spec, world, stage)
    table = train_table(ctx, data, loaded, stage, count, seed)
    reward_cfg = RewardConfig.from_spec(spec, stage)
    terms = RewardTerms(reward_cfg, spec.grpo.num_generations)
    args = GRPOConfig(
        output_dir=stage_out_dir(ctx, plan),
        **grpo_config_kwargs(spec, stage, world_size=world, use_cpu=ctx.use_cpu, bf16=ctx.bf16, model=loaded.model),
        reward_weights=terms.weights(),
        generation_kwargs=loaded.generation_kwargs() or None,
        gradient_checkpointing=spec.model.gradient_checkpointing,
        **(vllm_config_kwargs() if engine == "vllm" else {}),
    )
    return RARLGRPOTrainer(
        model=loaded.model,
        reward_funcs=terms.functions(),
        args=args,
        train_dataset=table.to_dataset(),
        processing_class=loaded.processor,
        reward_config=reward_cfg,
        rmo_config=RMOConfig.from_spec(stage.rmo, spec.dataset.target),
        rmo_seed=seed,
        rollout_engine=engine,
        max_prompt_length=spec.grpo.max_prompt_length,
        reward_terms=terms,
        reference_from_policy=plan.index > 0,
    )


def add_run_callbacks(trainer, ctx: RunContext, plan: StagePlan, session: CheckpointSession,
                      evaluate: Callable[[str], Metrics], report: Callable[..., None]) -> StageTrainer:
    """The run's callbacks on a stage's trainer (in place of TRL's console ones): TensorBoard at the run's
    global steps, progress lines and reports, the evaluations within the stage, and its checkpoints."""
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    point_tensorboard(trainer, ctx.tensorboard_dir / plan.stage.name, step_offset=plan.offset)
    run_callback = RunCallback(plan, ctx.spec.total_steps(), ctx.progress.record, report, ctx.dist.is_main)
    trainer.add_callback(run_callback)
    trainer.add_callback(StageCallback(ctx, plan, evaluate))
    checkpoints = session.checkpoint_callback(trainer, plan)
    trainer.add_callback(checkpoints)
    return StageTrainer(trainer, checkpoints, run_callback)


def build_stage_trainer(ctx: RunContext, loaded: LoadedModel, data: RunData, plan: StagePlan,
                        session: CheckpointSession, evaluate: Callable[[str], Metrics],
                        report: Callable[..., None]) -> StageTrainer:
    """``plan``'s stage trainer on ``loaded`` (already unsharded where ``needs_unshard`` says), callbacks added."""
    drop_reference_adapter(loaded.model)
    build = build_sft_trainer if plan.stage.kind == "sft" else build_grpo_trainer
    trainer = build(ctx, loaded, data, plan)
    return add_run_callbacks(trainer, ctx, plan, session, evaluate, report)
