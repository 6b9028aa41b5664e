"""Screen GRPO recipes after an SFT cold start, judged on a dev split that neither stage trains on.

Run: ``.venv/bin/python bench/bench_rl_screen.py --sft-job DIR/sft.yaml --workdir DIR [--variants v1 v3 ...]
[--list]``. ``--sft-job`` is the job document of the SFT run (e.g. ``examples/smollm2-afinn.yaml`` with only
its sft stage) and its export (``output.uri``) must hold the trained model.

Why a dev split: recipes must not be chosen on the held-out figures the learning table reports
(bench_learning.py). The dev split is drawn from the *training* split, from the items the SFT
stage never drew (its queries are drawn from a fixed seed, so they are known), and the RL jobs
train on the rest of the training split. Every RL job starts from the SFT export with a fresh
LoRA adapter (so the KL reference, ``grpo.beta`` > 0, is the SFT model), and is evaluated on the
whole dev split (``evalQueries: all``: every word alone, in pairs and in lists of 4) before and
after. What each variant changes is in ``VARIANTS``; bench/RESULTS.md keeps what each gave.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from _common import REPO

RANK_STAGE = {"name": "rank", "steps": 6, "listSizes": [2, 4],
              "rewardWeights": {"regression": 0.25, "ranking": 1.0, "format": 0.25},
              "rmo": {"epsilon": 0.01, "probability": 0.25, "mutations": 1, "sigma": 0.1, "mode": "auto", "swaps": 1}}
GRPO = {"numGenerations": 4, "perDeviceBatchSize": 8, "gradientAccumulationSteps": 8, "learningRate": 2e-5,
        "beta": 0.04, "temperature": 1.0, "maxPromptLength": 160, "maxCompletionLength": 56,
        "evalListSizes": [1, 2, 4], "evalQueries": "all", "seed": 0, "scaleRewards": "batch"}
# name: (stage overrides, grpo overrides, reward overrides); 16 prompts x G=4 a step unless changed.
VARIANTS: dict[str, tuple[dict, dict, dict]] = {
    "v1-rank16-lr2e5-b04-batch": ({}, {}, {}),
    "v2-rank16-with-singles-batchrank": ({"listSizes": [1, 2, 4]}, {}, {"batchRanking": True}),
    "v3-rank16-lr5e5-b10-batch": ({}, {"learningRate": 5e-5, "beta": 0.1}, {}),
    "v4-rank16-lr2e5-b04-group": ({}, {"scaleRewards": "group"}, {}),
    "v5-rank16-lr1e4-b04-batch": ({}, {"learningRate": 1e-4}, {}),
}
DEV_ITEMS = 240


def dev_split(sft_doc: dict[str, Any], work: Path) -> tuple[Path, Path]:
    """(RL training manifest, dev manifest): the dev items are training items the SFT stage never drew."""
    import numpy as np

    from rarl.api.validation import parse_job
    from rarl_trainer.data import load_items
    from rarl_trainer.queries import draw_queries
    from rarl_trainer.sft import queries_per_step

    spec = parse_job(sft_doc).spec
    train = load_items(spec.dataset, "train").items
    stage = next(s for s in spec.stages if s.kind == "sft")
    index = spec.stages.index(stage)
    drawn = draw_queries(train, stage.list_sizes, stage.steps * queries_per_step(spec, 1, stage),
                         spec.grpo.seed * 1000 + index)
    seen = {it.id for q in drawn for it in q.items}
    unseen = [it for it in train if it.id not in seen]
    dev = {unseen[int(i)].id for i in np.random.default_rng(123).choice(len(unseen), DEV_ITEMS, replace=False)}
    paths = work / "rl-train.jsonl", work / "dev.jsonl"
    for path, keep in zip(paths, (lambda it: it.id not in dev, lambda it: it.id in dev), strict=True):
        path.write_text("".join(json.dumps({"id": it.id, "text": it.text, "target": it.target}) + "\n"
                                for it in train if keep(it)))
    print(f"{len(train)} training items, {len(seen)} drawn by SFT, {len(dev)} dev items", flush=True)
    return paths


def job(sft_doc: dict[str, Any], name: str, work: Path, data: tuple[Path, Path], variant) -> dict[str, Any]:
    from rarl.api.validation import parse_job

    stage_over, grpo_over, reward_over = variant
    sft_spec = parse_job(sft_doc).spec
    doc = copy.deepcopy(sft_doc)
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["model"]["base"] = str(Path(sft_spec.output.uri) / "model")
    spec["dataset"] = {"format": "jsonl", "modality": spec["dataset"].get("modality", "text"),
                       "train": str(data[0]), "eval": str(data[1]), "instruction": sft_spec.dataset.instruction,
                       "target": sft_spec.dataset.target.model_dump(by_alias=True, exclude_none=True)}
    spec["reward"] = {**spec.get("reward", {}), **reward_over}
    spec["stages"] = [{**copy.deepcopy(RANK_STAGE), **stage_over}]
    spec["grpo"] = {**GRPO, **grpo_over}
    spec["checkpoint"] = {"uri": str(work / name / "ckpt"), "everySteps": 1_000_000, "keep": 1}
    spec["output"] = {"uri": str(work / name / "export")}
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sft-job", type=Path, required=False, help="the SFT run's job document (its export must exist)")
    p.add_argument("--workdir", type=Path, default=REPO / ".rarl" / "rl-screen")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--list", action="store_true", help="print the variants and exit")
    args = p.parse_args(argv)
    if args.list:
        for name, variant in VARIANTS.items():
            print(name, json.dumps(variant))
        return 0
    if args.sft_job is None:
        p.error("--sft-job is required")
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    sft_doc = yaml.safe_load(args.sft_job.read_text())
    data = dev_split(sft_doc, work)
    for name in args.variants:
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(job(sft_doc, name, work, data, VARIANTS[name]), sort_keys=False))
        t0 = time.monotonic()
        with (work / f"{name}.log").open("w") as log:
            rc = subprocess.call([str(Path(sys.executable).parent / "rarlctl"), "run", "-f", str(path)],
                                 stdout=log, stderr=subprocess.STDOUT, cwd=work)
        metrics = json.loads((work / name / "export" / "metrics.json").read_text()) if rc == 0 else {}
        keys = ("n1/mae", "n1/srcc", "n2/tau", "n4/tau", "invalid_rate")
        before, after = metrics.get("baseline", {}), metrics.get("final", {})
        print(f"{name}: rc {rc}, {time.monotonic() - t0:.0f} s; "
              + ", ".join(f"{k} {before.get(k, float('nan')):.3f} -> {after.get(k, float('nan')):.3f}" for k in keys),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
