"""An ``sft`` stage: supervised cold start on reference answers with TRL's ``SFTTrainer``.

The queries are drawn like a GRPO stage's; the completion is ``prompts.reference_answer`` for the
query's targets, so the model learns the answer format and the scale before RL. With
level words (``target.levels``, or the instruction's words for the ends of the scale:
``prompts.level_words``) the reasoning names each item's level first (``reference_reasoning``): the answer
then follows from something the model can say about the item, rather than one fixed sentence
that every item shares. Loss on the completion only (prompt-completion format).
"""

from __future__ import annotations

import logging
from typing import Any

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from rarl_trainer.prompts import reference_answer, reference_reasoning
from rarl_trainer.queries import QueryTable
from rarl_trainer.sharding import FSDPOnCPUMixin
from rarl_trainer.training_args import training_args_kwargs
from rarl_trainer.weights import ExactCheckpointMixin

log = logging.getLogger(__name__)


class RARLSFTTrainer(ExactCheckpointMixin, FSDPOnCPUMixin, SFTTrainer):
    """TRL's SFTTrainer with exact, strict checkpoint weights (see ``weights``)."""


def sft_dataset(table: QueryTable, dataset_spec):
    """A materialised prompt/completion dataset (SFTTrainer tokenises it up front for text models)."""
    target_spec = dataset_spec.target
    rows = []
    for i, q in enumerate(table.queries):
        row = table.row(i)
        item: dict[str, Any] = {
            "prompt": row["prompt"],
            "completion": [{"role": "assistant", "content": reference_answer(
                q.targets, target_spec.precision, reference_reasoning(q.targets, target_spec, dataset_spec.instruction))}],
        }
        if "images" in row:
            item["images"] = row["images"]
        rows.append(item)
    return Dataset.from_list(rows)


def sft_config_kwargs(job_spec, stage, *, world_size: int, use_cpu: bool, bf16: bool,
                      model=None) -> dict[str, Any]:
    """SFTConfig arguments: the shared training arguments, loss on the reference answer only."""
    return dict(
        **training_args_kwargs(job_spec, stage, world_size=world_size, use_cpu=use_cpu, bf16=bf16, model=model),
        completion_only_loss=True,
        max_length=None,
        gradient_checkpointing=job_spec.model.gradient_checkpointing,
    )


def queries_per_step(job_spec, world_size: int, stage=None) -> int:
    g = job_spec.grpo
    return g.per_device_batch_size * g.accumulation(stage) * world_size


def answers_cut_off(dataset, tokenizer, limit: int) -> tuple[int, int]:
    """(reference answers longer than ``limit`` tokens, the longest one's length in tokens)."""
    lengths = [len(tokenizer(row["completion"][0]["content"], add_special_tokens=False)["input_ids"]) + 1  # + EOS
               for row in dataset]
    return sum(n > limit for n in lengths), max(lengths, default=0)


def warn_cut_off_answers(dataset, tokenizer, job_spec, stage) -> None:
    """A stage whose reference answers do not fit ``grpo.maxCompletionLength`` teaches answers that every
    rollout and evaluation cuts off (they then count as invalid): say so before training, with the fix.

    Measured: a -4..4 target with precision 0.1 gave lists of 4 about 60 tokens of answer (59 with
    SmolLM2's tokenizer), over the AFINN recipe's 56, and every list of 4 was invalid after SFT
    (bench/RESULTS.md)."""
    limit = job_spec.grpo.max_completion_length
    cut, longest = answers_cut_off(dataset, tokenizer, limit)
    if cut:
        log.warning(f"rarl: warning: {cut} of {len(dataset)} reference answers of stage {stage.name} are longer than "
                    f"grpo.maxCompletionLength ({limit} tokens; the longest is {longest}): rollouts and evaluations cut "
                    f"such answers off and count them invalid; raise maxCompletionLength to at least {longest}")


def make_sft_trainer(loaded, table: QueryTable, job_spec, stage, output_dir: str, *, world_size: int,
                     use_cpu: bool, bf16: bool, callbacks: list, is_main: bool = True) -> RARLSFTTrainer:
    args = SFTConfig(output_dir=output_dir,
                     **sft_config_kwargs(job_spec, stage, world_size=world_size, use_cpu=use_cpu, bf16=bf16,
                                         model=loaded.model))
    dataset = sft_dataset(table, job_spec.dataset)
    if is_main:
        warn_cut_off_answers(dataset, loaded.tokenizer, job_spec, stage)
    return RARLSFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=dataset,
        processing_class=loaded.processor,
        callbacks=callbacks,
    )
