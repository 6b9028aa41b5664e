"""RARL trainer versus vanilla TRL ``GRPOTrainer``: step time ratio and RARL's own overhead share.

Run: ``.venv/bin/python bench/bench_trainer.py [--model builtin:tiny-lm] [--rounds 4] [--steps 12] [--quick] [--no-record]``;
the real-model figures: ``--model builtin:smollm2-135m-instruct --data afinn --rounds 2 --steps 4 --length 48``.

Both trainers get the same tiny model (fresh, identical weights), the same pre-drawn queries,
batch, group size, completion length and number of steps; rounds alternate which runs first
(interleaved) so machine noise hits both alike. Vanilla uses one reward function returning
RARL's total reward (what a plain-TRL user would write); the RARL trainer adds the three logged
reward terms, RMO (decode, gather, score, mutate, re-tokenise) and the progress callback.
Reported: median step time of each (first step of a round dropped), the ratio (goal <= 1.05) and
the share of RARL's step time spent in reward + RMO + progress (goal <= 1 %), with min/median/max
over rounds, and where each trainer's step time goes (generation, the rest of rollout scoring,
the loss forward, backward + optimizer). The figures are appended to bench/RESULTS.md unless
``--no-record``; ``--quick`` runs 2 rounds of 6 steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import add_common_args, fmt_mmm, goal, record

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t0)


class PhaseTimer:
    """Seconds spent in GRPOTrainer's phases, by wrapping the instance's methods (same for both trainers).

    generate: ``_generate`` (sampling the completions); score: the rest of
    ``_generate_and_score_completions`` (rewards, RMO, old/ref log-probs); loss: ``compute_loss`` (the
    policy forward); the remainder of a step is backward + optimizer.
    """

    def __init__(self, trainer) -> None:
        self.seconds = {"generate": 0.0, "rollout": 0.0, "loss": 0.0}
        for attr, key in (("_generate", "generate"), ("_generate_and_score_completions", "rollout"),
                          ("compute_loss", "loss")):
            setattr(trainer, attr, self._timed(getattr(trainer, attr), key))

    def _timed(self, fn, key):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - t0
        return wrapper

    def shares(self, step_total: float) -> dict[str, float]:
        """Share of the step time per phase (generate, score, loss, backward+optimizer)."""
        gen, roll, loss = self.seconds["generate"], self.seconds["rollout"], self.seconds["loss"]
        return {"generate": gen / step_total, "score": (roll - gen) / step_total, "loss": loss / step_total,
                "backward": max(0.0, step_total - roll - loss) / step_total}


DATASETS = {
    "synthetic": {"format": "synthetic", "synthetic": {"trainSize": 256, "evalSize": 8, "seed": 0, "imageSize": 32},
                  "target": {"min": 1, "max": 9, "unit": "shapes", "precision": 1}},
    "afinn": {"format": "jsonl", "train": "builtin:afinn-en-165"},
}


def job(tmp: Path, base: str, modality: str, steps: int, batch: int, group: int, length: int,
        list_sizes: tuple[int, ...] = (1, 2, 4), data: str = "synthetic"):
    from rarl.api.validation import parse_job

    return parse_job({
        "apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": "bench"},
        "spec": {
            "model": {"base": base, "dtype": "float32", "lora": {"r": 8, "alpha": 16}},
            "dataset": {**DATASETS[data], "modality": modality},
            "stages": [{"name": "bench", "steps": steps, "listSizes": list(list_sizes),
                        "rmo": {"epsilon": 0.01, "probability": 0.2, "mutations": 2}}],
            "grpo": {"numGenerations": group, "perDeviceBatchSize": batch, "learningRate": 1e-4, "beta": 0.0,
                     "maxCompletionLength": length, "seed": 0, "evalListSizes": [1], "evalQueries": 1},
            "checkpoint": {"uri": str(tmp / "ckpt"), "everySteps": 1_000_000},
            "output": {"uri": str(tmp / "out")},
        },
    })


def build_rarl(training, plan):
    """The RARL trainer of ``plan``'s stage, built by the run's own parts (``loop.Training``)."""
    return training.make_trainer(plan).trainer


def rarl_callback_seconds(trainer) -> float:
    """The time the run's progress callback (``reporting.RunCallback``) spent in logging and progress reports."""
    from rarl_trainer.reporting import RunCallback

    return next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, RunCallback)).seconds


def rarl_args_and_data(training, plan):
    """The RARL trainer's arguments and query dataset, with that trainer and its model freed: vanilla TRL
    trains on the same inputs, and its peak GPU memory is its own (no RARL model left on the device)."""
    import gc
    import weakref

    import torch

    trainer = build_rarl(training, plan)
    args, data = trainer.args, trainer.train_dataset
    model = weakref.ref(training.loaded.model)
    del trainer
    training.loaded = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if model() is not None:
        raise RuntimeError("the RARL model is still referenced after its trainer was dropped: the vanilla run "
                           "would measure its memory too")
    return args, data


def build_vanilla(training, plan, args, train_dataset):
    """Plain GRPOTrainer: the RARL run's args and data, a fresh copy of the same model, one total-reward function."""
    from trl import GRPOTrainer

    from rarl_trainer.grpo import completion_text
    from rarl_trainer.models import load_model
    from rarl_trainer.rewards import RewardConfig, score

    cfg = RewardConfig.from_spec(training.ctx.spec, plan.stage)

    def total(prompts, completions, targets, **_):
        return [score(completion_text(c), t, cfg).total for c, t in zip(completions, targets, strict=True)]

    loaded = load_model(training.ctx.spec.model, training.ctx.spec.storage)
    args.reward_weights = None
    trainer = GRPOTrainer(model=loaded.model, reward_funcs=[total], args=args,
                          train_dataset=train_dataset, processing_class=loaded.processor)
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer


def one_round(tmp: Path, spec_args: dict, order: list[str]) -> dict[str, dict]:
    from rarl.progress import FileProgressReporter
    from rarl_trainer.config import DistInfo, stage_plan
    from rarl_trainer.loop import Run

    out: dict[str, dict] = {}
    for kind in order:
        rjob = job(tmp / kind, **spec_args)
        training = Run(rjob, tmp / kind / "run", resume="never", dist=DistInfo(),
                       reporter=FileProgressReporter(tmp / kind / "run" / "progress.json")).set_up()
        plan = stage_plan(rjob.spec)[0]
        trainer = build_vanilla(training, plan, *rarl_args_and_data(training, plan)) if kind == "vanilla" else build_rarl(training, plan)
        timer = StepTimer()
        trainer.add_callback(timer)
        phases = PhaseTimer(trainer)
        torch.manual_seed(0)
        trainer.train()
        if training.session.uploader is not None:
            training.session.uploader.wait()  # the stage-end checkpoint (RARL) is uploaded in the background
        times = timer.times[1:]
        info = {"median": statistics.median(times), "total": sum(times), "steps": len(times),
                "phases": phases.shares(sum(timer.times))}
        if kind == "rarl":
            first = timer.times[0]
            overhead = (trainer.rarl_timing["reward_rmo_s"] + trainer.rarl_reward_terms.seconds
                        + rarl_callback_seconds(trainer))
            info["overhead_share"] = overhead / (sum(times) + first)
            info["mutation_rate"] = statistics.mean(h.get("rarl/mutation_rate", 0.0)
                                                    for h in trainer.state.log_history if "reward" in h)
        out[kind] = info
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:tiny-lm",
                   help="builtin:tiny-lm, builtin:tiny-qwen2.5-vl or builtin:smollm2-135m-instruct")
    p.add_argument("--data", default="synthetic", choices=sorted(DATASETS),
                   help="synthetic counting items, or afinn (real words, builtin:afinn-en-165; text models)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 4, --quick 2)")
    p.add_argument("--steps", type=int, default=None, help="steps per trainer and round (default 12, --quick 6)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--length", type=int, default=32)
    add_common_args(p)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 4
    if args.steps is None:
        args.steps = 6 if args.quick else 12
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    modality = "image" if "vl" in args.model else "text"
    if args.data == "afinn" and modality != "text":
        p.error("--data afinn has text items: use a text model")
    spec_args = dict(base=args.model, modality=modality, steps=args.steps, batch=args.batch, group=args.group,
                     length=args.length, data=args.data)
    rounds = []
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            order = ["rarl", "vanilla"] if r % 2 == 0 else ["vanilla", "rarl"]
            res = one_round(Path(d) / f"r{r}", spec_args, order)
            rounds.append(res)
            print(f"round {r}: rarl {res['rarl']['median'] * 1000:.1f} ms/step, vanilla "
                  f"{res['vanilla']['median'] * 1000:.1f} ms/step, ratio "
                  f"{res['rarl']['median'] / res['vanilla']['median']:.3f}, overhead "
                  f"{100 * res['rarl']['overhead_share']:.2f} %", flush=True)
    rarl = statistics.median(r["rarl"]["median"] for r in rounds)
    vanilla = statistics.median(r["vanilla"]["median"] for r in rounds)
    ratios = [r["rarl"]["median"] / r["vanilla"]["median"] for r in rounds]
    share = statistics.median(r["rarl"]["overhead_share"] for r in rounds)
    mut = statistics.mean(r["rarl"]["mutation_rate"] for r in rounds)
    shares = [r["rarl"]["overhead_share"] for r in rounds]

    def phase(kind: str, key: str) -> str:
        return f"{100 * statistics.median(r[kind]['phases'][key] for r in rounds):.0f} %"

    body = "\n".join([
        f"Model {args.model} (LoRA r=8), data {args.data}, batch {args.batch}, G={args.group}, max completion "
        f"{args.length} tokens, {args.steps} steps x {args.rounds} interleaved rounds (first step of each dropped); "
        f"list sizes 1/2/4; RMO mutation rate {mut:.2f} of groups.",
        "",
        "| trainer | median step (ms) | generate | score (rewards, RMO, log-probs) | loss forward | backward + optimizer |",
        "|---|---|---|---|---|---|",
        *(f"| {label} | {value * 1000:.1f} | {phase(kind, 'generate')} | {phase(kind, 'score')} | "
          f"{phase(kind, 'loss')} | {phase(kind, 'backward')} |"
          for label, kind, value in (("vanilla GRPOTrainer", "vanilla", vanilla), ("RARL trainer", "rarl", rarl))),
        "",
        f"Step time ratio RARL/vanilla: {rarl / vanilla:.3f} (per round min / median / max: {fmt_mmm(ratios)}; "
        f"goal <= 1.05). Reward + RMO + progress share of RARL's step time: {100 * share:.2f} % "
        f"(per round {fmt_mmm(shares, 100, '.2f')} %; goal <= 1 %).",
    ])
    print(body)
    short = args.model.removeprefix("builtin:")
    goal("trainer", f"step time ratio RARL/vanilla ({short})", rarl / vanilla, 1.05)
    goal("trainer", f"reward+RMO+progress share ({short})", 100 * share, 1.0, " %", fmt=".2f")
    record("bench_trainer.py: RARL trainer vs vanilla TRL GRPOTrainer", body,
           ["torch", "transformers", "trl", "peft"], enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
