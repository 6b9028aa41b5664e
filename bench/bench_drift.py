"""Which way does GRPO move an SFT model's valence? The diagnosis behind bench_learning.py's RL rows.

Run: ``.venv/bin/python bench/bench_drift.py --base /path/to/sft-export/model [--steps 4] [--no-record]``
(the SFT row's model of a ``bench_learning.py --workdir W`` run: ``W/sft-s0/export/model``).

For each of the recipe's first 32 held-out single words it measures the margin
``log p(" negative") - log p(" positive")`` of the next token after ``<think>Item 1 is`` (where the
SFT reasoning names the word's level), before and after ``--steps`` regression-only GRPO steps from
that base, in four runs side by side: our trainer and vanilla TRL ``GRPOTrainer`` (same arguments,
data and model), each with ``dataset.sampling`` uniform and balanced. A shift that is the same for
every word is a global bias (the model learns "answer negative", not which words are negative); a
useful update moves negative words towards "negative" and positive words the other way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from _common import REPO, add_common_args, record


def job_doc(recipe: dict[str, Any], base: str, work: Path, steps: int, sampling: str) -> dict[str, Any]:
    """bench_learning.py's regression-only row from ``base`` (its SFT export), with this sampling."""
    from bench_learning import job_doc as learning_job
    from bench_learning import rl_stages

    doc = learning_job(recipe, "drift", work, recipe["spec"]["grpo"].get("seed", 0), rl_stages(recipe, "reg", steps),
                       base=base)
    doc["spec"]["dataset"]["sampling"] = sampling
    return doc


def measure(doc: dict[str, Any], work: Path, trainer_kind: str) -> dict[str, Any]:
    import torch

    from rarl.api.validation import parse_job
    from rarl.progress import FileProgressReporter
    from rarl_trainer.config import DistInfo, stage_plan
    from rarl_trainer.loop import Run

    job = parse_job(doc)
    training = Run(job, work / "run", resume="never", dist=DistInfo(),
                   reporter=FileProgressReporter(work / "run" / "progress.json")).set_up()
    table = training.evaluator.table
    words = [i for i, q in enumerate(table.queries) if q.n == 1][:32]
    tok, processor = training.loaded.tokenizer, training.loaded.processor
    neg, pos = (tok(w, add_special_tokens=False)["input_ids"][0] for w in (" negative", " positive"))

    @torch.no_grad()
    def margins(model) -> list[float]:
        was = model.training
        model.eval()
        out = []
        for i in words:
            text = processor.apply_chat_template(table.row(i)["prompt"], add_generation_prompt=True,
                                                 tokenize=False) + "<think>Item 1 is"
            ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
            logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1)
            out.append(float(logp[neg] - logp[pos]))
        model.train(was)
        return out

    before = margins(training.loaded.model)
    plan = stage_plan(job.spec)[0]
    if trainer_kind == "vanilla":
        from bench_trainer import build_vanilla, rarl_args_and_data

        trainer = build_vanilla(training, plan, *rarl_args_and_data(training, plan))
    else:
        trainer = training.make_trainer(plan).trainer
    torch.manual_seed(0)
    trainer.train()
    after = margins(trainer.model)
    targets = [table.queries[i].targets[0] for i in words]
    shift = [b - a for a, b in zip(before, after, strict=True)]
    return {
        "mean": statistics.fmean(shift), "min": min(shift), "max": max(shift),
        "same_sign": max(sum(s > 0 for s in shift), sum(s < 0 for s in shift)) / len(shift),
        "negative_words": statistics.fmean(s for s, t in zip(shift, targets, strict=True) if t < 0),
        "positive_words": statistics.fmean(s for s, t in zip(shift, targets, strict=True) if t > 0),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="an SFT export's model folder (bench_learning.py --workdir)")
    p.add_argument("--recipe", type=Path, default=REPO / "examples" / "smollm2-afinn.yaml")
    p.add_argument("--steps", type=int, default=4, help="GRPO steps of each run")
    add_common_args(p)
    args = p.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    recipe = yaml.safe_load(args.recipe.read_text())
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for sampling in ("uniform", "balanced"):
            for kind in ("rarl", "vanilla"):
                work = Path(d) / f"{sampling}-{kind}"
                res = measure(job_doc(recipe, args.base, work, args.steps, sampling), work, kind)
                rows.append((sampling, kind, res))
                print(sampling, kind, {k: round(v, 3) for k, v in res.items()}, flush=True)
    lr = recipe["spec"]["grpo"]["learningRate"]
    body = "\n".join([
        f"Base {args.base} (the SFT row of bench_learning.py), recipe {args.recipe.name}: {args.steps} "
        f"regression-only GRPO steps (lr {lr}, G={recipe['spec']['grpo']['numGenerations']}, "
        f"{recipe['spec']['grpo']['perDeviceBatchSize']} completions a step), no RMO. Shift of the margin "
        "log p(' negative') - log p(' positive') after '<think>Item 1 is' on 32 held-out words "
        "(positive: towards 'negative').",
        "",
        "| sampling | trainer | mean shift | min | max | words shifted the same way | negative words | positive words |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {s} | {'RARL' if k == 'rarl' else 'vanilla TRL'} | {r['mean']:+.3f} | {r['min']:+.3f} | {r['max']:+.3f} "
          f"| {100 * r['same_sign']:.0f} % | {r['negative_words']:+.3f} | {r['positive_words']:+.3f} |"
          for s, k, r in rows),
        "",
        f"Reproduce: `.venv/bin/python bench/bench_drift.py --base {args.base} --steps {args.steps}`.",
    ])
    print(body)
    record("bench_drift.py: which way GRPO moves the SFT model's valence", body,
           ["torch", "transformers", "trl", "peft"], enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
