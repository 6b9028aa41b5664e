"""The TrainingArguments every stage shares (optimizer, schedule, logging, devices), GRPO and SFT alike."""

from __future__ import annotations

from typing import Any

from rarl_trainer.sharding import fsdp_training_args


def training_args_kwargs(job_spec, stage, *, world_size: int, use_cpu: bool, bf16: bool,
                         model=None) -> dict[str, Any]:
    """TrainingArguments shared by GRPO and SFT stages (optimizer, schedule, logging, devices).

    ``model``: the model to train; ``spec.model.sharding: fsdp`` needs it (its layer classes).
    """
    g = job_spec.grpo
    return dict(
        per_device_train_batch_size=g.per_device_batch_size,
        gradient_accumulation_steps=g.accumulation(stage),
        learning_rate=stage.learning_rate or g.learning_rate,
        warmup_steps=round(g.warmup_ratio * stage.steps),
        max_grad_norm=g.max_grad_norm,
        seed=g.seed,
        logging_steps=g.logging_steps,
        max_steps=stage.steps,
        report_to=[t for t in job_spec.logging.report_to if t != "none"] or "none",  # spec.logging
        disable_tqdm=True,
        use_cpu=use_cpu,
        bf16=bf16,
        dataloader_num_workers=0,
        save_strategy="no",
        ddp_find_unused_parameters=False if world_size > 1 else None,
        **fsdp_training_args(job_spec, model),
    )
