"""The GRPO levers of the spec (advantage scaling, loss, clipping, passes per batch) reach TRL's trainer, and a
maxCompletionLength too short for the SFT answers is said before training."""

from __future__ import annotations

from tests.trainer.conftest import first_stage_trainer, job_doc

ONE_STAGE = [{"name": "s1", "steps": 1, "listSizes": [1], "rmo": {"enabled": False}}]


def test_spec_levers_reach_trls_config_and_trainer(tmp_path):
    doc = job_doc(tmp_path, stages=ONE_STAGE, scaleRewards="batch", lossType="dr_grpo", epsilon=0.1,
                  epsilonHigh=0.28, numIterations=2)
    _, trainer = first_stage_trainer(tmp_path, doc)
    args = trainer.args
    assert (args.scale_rewards, args.loss_type, args.epsilon, args.epsilon_high, args.num_iterations) == (
        "batch", "dr_grpo", 0.1, 0.28, 2)
    # What TRL's step reads (not only its config): advantages, loss and clip bounds come from these.
    assert (trainer.scale_rewards, trainer.loss_type, trainer.num_iterations) == ("batch", "dr_grpo", 2)
    assert (trainer.epsilon_low, trainer.epsilon_high) == (0.1, 0.28)


def test_unset_levers_keep_trls_defaults(tmp_path):
    import dataclasses

    from trl import GRPOConfig

    trl_defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    _, trainer = first_stage_trainer(tmp_path, job_doc(tmp_path, stages=ONE_STAGE))
    for name in ("scale_rewards", "loss_type", "epsilon", "epsilon_high", "num_iterations"):
        assert getattr(trainer.args, name) == trl_defaults[name], name
    assert (trainer.scale_rewards, trainer.loss_type, trainer.num_iterations) == ("group", "dapo", 1)
    assert (trainer.epsilon_low, trainer.epsilon_high) == (0.2, 0.2)


def test_an_sft_stage_whose_answers_do_not_fit_max_completion_length_says_so(tmp_path, capsys):
    """Answers longer than grpo.maxCompletionLength are cut off in every rollout and evaluation: warned up front."""
    sft = [{"name": "cold", "kind": "sft", "steps": 1, "listSizes": [1, 2]}]
    first_stage_trainer(tmp_path / "short", job_doc(tmp_path / "short", stages=sft, maxCompletionLength=8))
    err = capsys.readouterr().err
    assert "reference answers of stage cold are longer than grpo.maxCompletionLength (8 tokens" in err
    longest = int(err.split("raise maxCompletionLength to at least ")[1].split()[0])
    first_stage_trainer(tmp_path / "fits", job_doc(tmp_path / "fits", stages=sft, maxCompletionLength=longest))
    assert "maxCompletionLength" not in capsys.readouterr().err


def test_a_stages_own_accumulation_reaches_its_trainer_and_its_query_count(tmp_path):
    """SFT at 8 queries a step, GRPO at 16 queries x G=4 a step: each stage's trainer and data get its own."""
    from rarl_trainer.config import stage_plan

    stages = [{"name": "cold", "kind": "sft", "steps": 2, "listSizes": [1]},
              {"name": "rank", "steps": 2, "listSizes": [1], "gradientAccumulationSteps": 8, "rmo": {"enabled": False}}]
    training, sft = first_stage_trainer(tmp_path, job_doc(tmp_path, stages=stages))
    assert sft.args.gradient_accumulation_steps == 1 and len(sft.train_dataset) == 2 * 8
    grpo = training.make_trainer(stage_plan(training.ctx.spec)[1]).trainer
    assert grpo.args.gradient_accumulation_steps == 8 and grpo.args.steps_per_generation == 8
    assert len(grpo.train_dataset) == 2 * 16  # 2 steps x 16 queries (64 completions / G)
