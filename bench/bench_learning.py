"""Does RARL teach a real model a real ordinal task? The paper's comparison, at our scale.

Run: ``.venv/bin/python bench/bench_learning.py [--recipe examples/smollm2-afinn.yaml] [--seeds 0 1]
[--sft-steps N] [--rl-steps N] [--quick] [--no-record]``.

Every row is evaluated on the same held-out queries (the recipe's ``grpo.evalQueries`` per list
size of ``evalListSizes``, drawn from the held-out split with the recipe's seed):

- mean: predict the training targets' mean for every item (the floor a model must beat);
- zero-shot: the base model as it is (the SFT job's baseline evaluation);
- SFT: the recipe's sft stage alone;
- regression GRPO: SFT, then GRPO with the regression + format reward on single items, no RMO;
- RARL without RMO: SFT, then the recipe's GRPO stages with RMO off;
- RARL: SFT, then the recipe's GRPO stages as written.

The three RL rows start from the SFT job's exported (merged) model with a fresh adapter and run
the same total number of GRPO steps. Every job runs through ``rarlctl run`` as a user's would.
The table, the configuration and the time each job took are appended to bench/RESULTS.md
unless ``--no-record``. ``--quick`` shortens every stage (a smoke run; the figures mean little).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _common import REPO, add_common_args, record

COLUMNS = [("n1/mae", "n=1 MAE", "lower"), ("n1/srcc", "n=1 SRCC", "higher"), ("n1/plcc", "n=1 PLCC", "higher"),
           ("n2/tau", "n=2 tau", "higher"), ("n4/tau", "n=4 tau", "higher"), ("invalid_rate", "invalid", "lower")]


def rl_stages(recipe: dict[str, Any], row: str, rl_steps: int | None) -> list[dict[str, Any]]:
    """The GRPO stages of a row: the recipe's (RARL), without RMO, or one regression-only stage."""
    stages = [copy.deepcopy(s) for s in recipe["spec"]["stages"] if s.get("kind", "grpo") == "grpo"]
    if rl_steps is not None:  # spread the requested total over the stages like the recipe does
        total = sum(s["steps"] for s in stages)
        left = rl_steps
        for i, s in enumerate(stages):
            s["steps"] = left if i == len(stages) - 1 else max(1, round(rl_steps * s["steps"] / total))
            left -= s["steps"]
    total = sum(s["steps"] for s in stages)
    if row == "rarl":
        return stages
    if row == "no-rmo":
        for s in stages:
            s["rmo"] = {**s.get("rmo", {}), "enabled": False}
        return stages
    first = stages[0]
    weights = dict(first.get("rewardWeights") or recipe["spec"].get("reward", {}).get("weights") or {})
    weights.update(ranking=0.0)
    return [{"name": "regression", "steps": total, "listSizes": [1], "rewardWeights": weights,
             **({"learningRate": first["learningRate"]} if "learningRate" in first else {}),
             "rmo": {"enabled": False}}]


def job_doc(recipe: dict[str, Any], name: str, work: Path, seed: int, stages: list[dict[str, Any]],
            base: str | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(recipe)
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["stages"] = stages
    spec["grpo"]["seed"] = seed
    if base is not None:
        spec["model"]["base"] = base
    spec["checkpoint"] = {"uri": str(work / name / "checkpoints"), "everySteps": 1_000_000, "keep": 1}
    spec["output"] = {"uri": str(work / name / "export")}
    return doc


def run_job(doc: dict[str, Any], work: Path) -> tuple[dict[str, Any], float]:
    """``rarlctl run`` the job; (its metrics.json, seconds)."""
    name = doc["metadata"]["name"]
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    t0 = time.monotonic()
    log = work / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.run([str(Path(sys.executable).parent / "rarlctl"), "run", "-f", str(path),
                               "--home", str(work / "home")], stdout=out, stderr=subprocess.STDOUT, cwd=work, check=False)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"job {name} failed (rc {proc.returncode}); its log: {log}")
    metrics = json.loads((work / name / "export" / "metrics.json").read_text())
    print(f"{name}: {seconds:.0f} s", flush=True)
    return metrics, seconds


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The evaluation after the last stage (metrics.json ``final``)."""
    return metrics["final"]


def mean_floor(recipe: dict[str, Any], seed: int) -> dict[str, float]:
    """Metrics of predicting the training mean on the same held-out queries as the jobs."""
    from rarl.api.validation import parse_job
    from rarl.metrics import evaluate, finite_metrics
    from rarl_trainer.data import load_items
    from rarl_trainer.evaluation import eval_queries

    spec = parse_job(job_doc(recipe, "floor", Path("/tmp"), seed, recipe["spec"]["stages"])).spec
    train = load_items(spec.dataset, "train").items
    held_out = load_items(spec.dataset, "eval").items
    mean = statistics.fmean(it.target for it in train)
    queries = eval_queries(held_out, spec.grpo.eval_list_sizes, spec.grpo.eval_queries, seed)
    rows = [{"pred": [mean] * q.n, "target": q.targets} for q in queries]
    return finite_metrics(evaluate(rows, precision=float(spec.dataset.target.precision)))


def fmt(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.fmean(vals):.3f} ± {statistics.pstdev(vals):.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=REPO / "examples" / "smollm2-afinn.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="grpo.seed of every job (one table row each)")
    p.add_argument("--sft-steps", type=int, default=None, help="steps of the sft stage (default: the recipe's)")
    p.add_argument("--rl-steps", type=int, default=None, help="total GRPO steps of each RL row (default: the recipe's)")
    p.add_argument("--workdir", type=Path, default=None, help="keep the jobs here (default: a temporary folder)")
    add_common_args(p)
    args = p.parse_args(argv)
    recipe = yaml.safe_load(args.recipe.read_text())
    if args.quick:
        args.sft_steps = args.sft_steps or 2
        args.rl_steps = args.rl_steps or 2
        recipe["spec"]["grpo"]["evalQueries"] = 4
    sft = [copy.deepcopy(s) for s in recipe["spec"]["stages"] if s.get("kind") == "sft"]
    if len(sft) != 1:
        p.error(f"{args.recipe} needs exactly one sft stage (it has {len(sft)})")
    if args.sft_steps is not None:
        sft[0]["steps"] = args.sft_steps

    rows: dict[str, list[dict[str, float]]] = {k: [] for k in ("mean", "zero-shot", "sft", "reg", "no-rmo", "rarl")}
    seconds: dict[str, list[float]] = {k: [] for k in rows}
    same_start: list[bool] = []  # each RL job's evaluation before training equals the SFT row's
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(tmp.name) if tmp is not None else args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for seed in args.seeds:
        rows["mean"].append(mean_floor(recipe, seed))
        metrics, secs = run_job(job_doc(recipe, f"sft-s{seed}", work, seed, sft), work)
        rows["zero-shot"].append(metrics["baseline"])
        rows["sft"].append(final_metrics(metrics))
        seconds["sft"].append(secs)
        base = str(work / f"sft-s{seed}" / "export" / "model")
        for row in ("reg", "no-rmo", "rarl"):
            stages = rl_stages(recipe, row, args.rl_steps)
            metrics, secs = run_job(job_doc(recipe, f"{row}-s{seed}", work, seed, stages, base=base), work)
            rows[row].append(final_metrics(metrics))
            seconds[row].append(secs)
            same_start.append(metrics["baseline"] == rows["sft"][-1])
    total = time.monotonic() - started

    labels = {"mean": "predict the training mean", "zero-shot": "zero-shot", "sft": "SFT only",
              "reg": "SFT + GRPO, regression reward only, no RMO", "no-rmo": "RARL without RMO",
              "rarl": "RARL (ranking-aware reward + RMO)"}
    header = "| row | " + " | ".join(c[1] for c in COLUMNS) + " | job time (s) |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for key, label in labels.items():
        cells = [fmt([m.get(col) for m in rows[key]]) for col, _, _ in COLUMNS]
        secs = f"{statistics.fmean(seconds[key]):.0f}" if seconds[key] else "-"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {secs} |")
    spec = recipe["spec"]
    rl = rl_stages(recipe, "rarl", args.rl_steps)
    rl_text = ", ".join(f"{s['name']} {s['steps']}" for s in rl)
    config = (
        f"Recipe {args.recipe.relative_to(REPO) if args.recipe.is_relative_to(REPO) else args.recipe} "
        f"(model {spec['model']['base']}, data {spec['dataset']['train']}); seeds {args.seeds}; "
        f"SFT {sft[0]['steps']} steps, list sizes {sft[0].get('listSizes', [1])}; RL rows "
        f"{sum(s['steps'] for s in rl)} GRPO steps ({rl_text}); "
        f"G={spec['grpo']['numGenerations']}, batch {spec['grpo']['perDeviceBatchSize']} completions, max "
        f"{spec['grpo']['maxCompletionLength']} tokens; evaluation: {spec['grpo']['evalQueries']} held-out queries per "
        f"list size {spec['grpo']['evalListSizes']}, greedy. Mean ± population std over seeds where there are "
        f"several; '-': undefined (constant predictions) or not measured. Total {total / 60:.1f} min. "
        f"Every RL job's evaluation before training equals the SFT row's: {all(same_start)}."
    )
    command = (f"Reproduce: `.venv/bin/python bench/bench_learning.py --seeds {' '.join(map(str, args.seeds))}"
               + (f" --sft-steps {args.sft_steps}" if args.sft_steps is not None else "")
               + (f" --rl-steps {args.rl_steps}" if args.rl_steps is not None else "")
               + (" --quick" if args.quick else "") + "`.")
    body = "\n".join([config, "", *lines, "", command])
    print(body)
    record("bench_learning.py: what RARL teaches SmolLM2-135M on word valence (AFINN)", body,
           ["torch", "transformers", "trl", "peft"], enabled=not args.no_record)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
