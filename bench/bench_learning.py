"""Does RARL teach a real model a real ordinal task? The paper's comparison, at our scale.

Run: ``.venv/bin/python bench/bench_learning.py [--recipe examples/smollm2-afinn.yaml] [--seeds 0 1 2]
[--sft-steps N] [--rl-steps N] [--eval-queries all|N] [--workdir DIR] [--quick] [--no-record]``.

Every row is evaluated on the same held-out queries: by default the whole held-out split
(``grpo.evalQueries: all``: every item alone, and dealt into lists of 2 and 4 with distinct targets):

- mean: predict the training targets' mean for every item (the floor a model must beat);
- zero-shot: the base model as it is (the SFT job's baseline evaluation);
- SFT: the recipe's sft stage alone;
- regression GRPO: SFT, then GRPO with the regression + format reward on single items, no RMO;
- RARL without RMO: SFT, then the recipe's GRPO stages with RMO off;
- RARL (full method): SFT, then the recipe's GRPO stages as written.

The three RL rows start from the SFT job's exported (merged) model with a fresh adapter and run
the same number of GRPO steps on the same number of queries a step. Every job runs through
``rarlctl run`` as a user's would. Each figure comes with a bootstrap 95 % interval over the
held-out queries (1000 resamples of the queries, within each list size); with several seeds the
table gives the mean and the population std over seeds, and a second table every seed's figures.

``--workdir`` keeps the jobs; a job whose folder already holds an export made from the same job
document is reused, so seeds can run side by side (one ``--no-record`` process per seed on the
same workdir, then one run with every seed writes the table). ``--quick`` shortens every stage
(a smoke run; the figures mean little).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _common import REPO, add_common_args, record

COLUMNS = [("n1/mae", "n=1 MAE"), ("n1/srcc", "n=1 SRCC"), ("n1/plcc", "n=1 PLCC"), ("n2/tau", "n=2 tau"),
           ("n2/tied_rate", "n=2 tied"), ("n4/tau", "n=4 tau"), ("n4/tied_rate", "n=4 tied"),
           ("invalid_rate", "invalid")]
ROWS = {"mean": "predict the training mean", "zero-shot": "zero-shot", "sft": "SFT only",
        "reg": "SFT + GRPO, regression reward only, no RMO", "no-rmo": "RARL without RMO",
        "rarl": "RARL, full method (ranking-aware reward + RMO)"}
RL_ROWS = ("reg", "no-rmo", "rarl")
PAIRED = ("n1/mae", "n1/srcc", "n1/plcc", "n2/tau", "n4/tau")  # the figures each RL row is compared with SFT on
BOOTSTRAP = 1000


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
    same_compute = {k: first[k] for k in ("learningRate", "gradientAccumulationSteps") if k in first}
    return [{"name": "regression", "steps": total, "listSizes": [1], "rewardWeights": weights, **same_compute,
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


def run_job(doc: dict[str, Any], work: Path) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """``rarlctl run`` the job, or reuse its export when the same document made it: (metrics, rows, seconds)."""
    name = doc["metadata"]["name"]
    path = work / f"{name}.yaml"
    text = yaml.safe_dump(doc, sort_keys=False)
    export = work / name / "export"
    timing = work / name / "seconds.json"
    if path.is_file() and path.read_text() == text and (export / "predictions.jsonl").is_file() and timing.is_file():
        print(f"{name}: reused", flush=True)
    else:
        path.write_text(text)
        t0 = time.monotonic()
        log = work / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.run([str(Path(sys.executable).parent / "rarlctl"), "run", "-f", str(path),
                                   "--home", str(work / "home")], stdout=out, stderr=subprocess.STDOUT, cwd=work,
                                  check=False)
        if proc.returncode != 0:
            raise SystemExit(f"job {name} failed (rc {proc.returncode}); its log: {log}")
        timing.write_text(json.dumps(time.monotonic() - t0))
        print(f"{name}: {json.loads(timing.read_text()):.0f} s", flush=True)
    metrics = json.loads((export / "metrics.json").read_text())
    rows = [json.loads(line) for line in (export / "predictions.jsonl").read_text().splitlines()]
    return metrics, rows, json.loads(timing.read_text())


def mean_floor(recipe: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Rows of predicting the training mean on the same held-out queries as the jobs."""
    from rarl.api.validation import parse_job
    from rarl_trainer.data import load_items
    from rarl_trainer.evaluation import eval_queries

    spec = parse_job(job_doc(recipe, "floor", Path("/tmp"), seed, recipe["spec"]["stages"])).spec
    train = load_items(spec.dataset, "train").items
    held_out = load_items(spec.dataset, "eval").items
    mean = statistics.fmean(it.target for it in train)
    queries = eval_queries(held_out, spec.grpo.eval_list_sizes, spec.grpo.eval_queries, seed)
    return [{"pred": [mean] * q.n, "target": q.targets} for q in queries]


def figures(rows: list[dict[str, Any]], precision: float) -> dict[str, float]:
    from rarl.metrics import evaluate

    return evaluate(rows, precision=precision)


def bootstrap(rows: list[dict[str, Any]], precision: float, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of every figure: the queries resampled with replacement within each list size."""
    by_size: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_size.setdefault(len(r["target"]), []).append(r)
    rng = random.Random(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(BOOTSTRAP):
        sample = [rng.choice(group) for group in by_size.values() for _ in group]
        for key, value in figures(sample, precision).items():
            if math.isfinite(value):
                draws.setdefault(key, []).append(value)
    out = {}
    for key, values in draws.items():
        values.sort()
        if len(values) >= BOOTSTRAP // 2:  # undefined in most resamples: no interval
            out[key] = (values[int(0.025 * len(values))], values[min(len(values) - 1, int(0.975 * len(values)))])
    return out


def paired_bootstrap(before: list[dict[str, Any]], after: list[dict[str, Any]], precision: float,
                     seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """after - before of every figure on the same queries: (difference, 95 % interval), the same resample for both.

    Why paired: two jobs of one seed answer the very same held-out queries, so resampling the queries once for
    both removes the spread that comes from which queries were drawn (what the per-row intervals hold).
    """
    if [r["target"] for r in before] != [r["target"] for r in after]:
        raise SystemExit("the two evaluations are not over the same queries: cannot pair them")
    by_size: dict[int, list[int]] = {}
    for i, r in enumerate(before):
        by_size.setdefault(len(r["target"]), []).append(i)
    rng = random.Random(seed)
    point = {k: v - figures(before, precision)[k] for k, v in figures(after, precision).items()}
    draws: dict[str, list[float]] = {}
    for _ in range(BOOTSTRAP):
        idx = [rng.choice(group) for group in by_size.values() for _ in group]
        a, b = figures([after[i] for i in idx], precision), figures([before[i] for i in idx], precision)
        for key in a.keys() & b.keys():
            if math.isfinite(a[key]) and math.isfinite(b[key]):
                draws.setdefault(key, []).append(a[key] - b[key])
    out = {}
    for key, values in draws.items():
        values.sort()
        if len(values) >= BOOTSTRAP // 2 and math.isfinite(point.get(key, math.nan)):
            out[key] = (point[key], values[int(0.025 * len(values))], values[min(len(values) - 1, int(0.975 * len(values)))])
    return out


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    """The same evaluation, written once by the trainer (finite figures) and once recomputed here."""
    return all(math.isclose(v, b[k], abs_tol=1e-9) for k, v in a.items() if k in b)


def cell(values: list[float | None], interval: tuple[float, float] | None = None) -> str:
    """One seed: value [95 % interval]; several: mean ± population std over seeds."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
    return f"{statistics.fmean(vals):.3f} ± {statistics.pstdev(vals):.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=REPO / "examples" / "smollm2-afinn.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="grpo.seed of every job (one table row each)")
    p.add_argument("--sft-steps", type=int, default=None, help="steps of the sft stage (default: the recipe's)")
    p.add_argument("--rl-steps", type=int, default=None, help="total GRPO steps of each RL row (default: the recipe's)")
    p.add_argument("--workdir", type=Path, default=None, help="keep the jobs here (default: a temporary folder)")
    p.add_argument("--rows", nargs="+", choices=RL_ROWS, default=list(RL_ROWS),
                   help="which RL rows to run (mean, zero-shot and SFT always are); the others show '-'")
    p.add_argument("--eval-queries", default="all", help="grpo.evalQueries of every job: all (the whole held-out "
                                                              "split) or a count per list size")
    add_common_args(p)
    args = p.parse_args(argv)
    recipe = yaml.safe_load(args.recipe.read_text())
    recipe["spec"]["grpo"]["evalQueries"] = args.eval_queries if args.eval_queries == "all" else int(args.eval_queries)
    if args.quick:
        args.sft_steps = args.sft_steps or 2
        args.rl_steps = args.rl_steps or 2
        recipe["spec"]["grpo"]["evalQueries"] = 4
    sft = [copy.deepcopy(s) for s in recipe["spec"]["stages"] if s.get("kind") == "sft"]
    if len(sft) != 1:
        p.error(f"{args.recipe} needs exactly one sft stage (it has {len(sft)})")
    if args.sft_steps is not None:
        sft[0]["steps"] = args.sft_steps

    from rarl.api.validation import parse_job

    precision = float(parse_job(job_doc(recipe, "p", Path("/tmp"), 0, sft)).spec.dataset.target.precision)
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in ROWS}
    intervals: dict[str, list[dict[str, tuple[float, float]]]] = {k: [] for k in ROWS}
    seconds: dict[str, list[float]] = {k: [] for k in ROWS}
    same_start: list[bool] = []  # each RL job's evaluation before training equals the SFT row's
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(tmp.name) if tmp is not None else args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    evaluated_rows: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def add(row: str, evaluated: list[dict[str, Any]], seed: int) -> None:
        evaluated_rows[row, seed] = evaluated
        rows[row].append(figures(evaluated, precision))
        intervals[row].append(bootstrap(evaluated, precision, seed))

    for seed in args.seeds:
        add("mean", mean_floor(recipe, seed), seed)
        metrics, evaluated, secs = run_job(job_doc(recipe, f"sft-s{seed}", work, seed, sft), work)
        rows["zero-shot"].append(metrics["baseline"])
        intervals["zero-shot"].append({})
        add("sft", evaluated, seed)
        seconds["sft"].append(secs)
        base = str(work / f"sft-s{seed}" / "export" / "model")
        for row in (r for r in RL_ROWS if r in args.rows):
            stages = rl_stages(recipe, row, args.rl_steps)
            metrics, evaluated, secs = run_job(job_doc(recipe, f"{row}-s{seed}", work, seed, stages, base=base), work)
            add(row, evaluated, seed)
            seconds[row].append(secs)
            same_start.append(_same(metrics["baseline"], rows["sft"][-1]))
    total = time.monotonic() - started

    header = "| row | " + " | ".join(c[1] for c in COLUMNS) + " | job time (s) |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for key, label in ROWS.items():
        if not rows[key]:
            continue  # an RL row left out with --rows
        cells = [cell([m.get(col) for m in rows[key]], intervals[key][0].get(col) if len(args.seeds) == 1 else None)
                 for col, _ in COLUMNS]
        secs = f"{statistics.fmean(seconds[key]):.0f}" if seconds[key] else "-"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {secs} |")
    if len(args.seeds) > 1:
        lines += ["", "Every seed (value [bootstrap 95 % interval over the held-out queries]):", "",
                  "| row | seed | " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
        for key, label in ROWS.items():
            for seed, m, iv in zip(args.seeds if rows[key] else [], rows[key], intervals[key], strict=True):
                cells = [cell([m.get(col)], iv.get(col)) for col, _ in COLUMNS]
                lines.append(f"| {label} | {seed} | " + " | ".join(cells) + " |")
    paired = [(key, label, seed) for key, label in ROWS.items() if key in RL_ROWS for seed in args.seeds
              if (key, seed) in evaluated_rows]
    if paired:
        lines += ["", "Each RL row minus SFT, seed by seed (paired bootstrap: the same held-out queries resampled "
                  f"{BOOTSTRAP} times for both; difference [95 % interval]):", "",
                  "| row | seed | " + " | ".join(label for col, label in COLUMNS if col in PAIRED) + " |",
                  "|" + "---|" * (len(PAIRED) + 2)]
        for key, label, seed in paired:
            diff = paired_bootstrap(evaluated_rows["sft", seed], evaluated_rows[key, seed], precision, seed)
            cells = [f"{diff[col][0]:+.3f} [{diff[col][1]:+.2f}, {diff[col][2]:+.2f}]" if col in diff else "-"
                     for col, _ in COLUMNS if col in PAIRED]
            lines.append(f"| {label} | {seed} | " + " | ".join(cells) + " |")
    spec = recipe["spec"]
    rl = rl_stages(recipe, "rarl", args.rl_steps)
    rl_text = ", ".join(f"{s['name']} {s['steps']}" for s in rl)
    config = (
        f"Recipe {args.recipe.relative_to(REPO) if args.recipe.is_relative_to(REPO) else args.recipe} "
        f"(model {spec['model']['base']}, data {spec['dataset'].get('train', spec['dataset']['format'])}); seeds {args.seeds}; "
        f"SFT {sft[0]['steps']} steps, list sizes {sft[0].get('listSizes', [1])}; RL rows "
        f"{sum(s['steps'] for s in rl)} GRPO steps ({rl_text}); "
        f"G={spec['grpo']['numGenerations']}, {spec['grpo']['perDeviceBatchSize']} completions x "
        f"{rl[0].get('gradientAccumulationSteps', spec['grpo'].get('gradientAccumulationSteps', 1))} micro-batches "
        f"a GRPO step, lr {spec['grpo']['learningRate']}, beta {spec['grpo'].get('beta', 0.04)}, max "
        f"{spec['grpo']['maxCompletionLength']} tokens; evaluation: {spec['grpo']['evalQueries']} held-out queries per "
        f"list size {spec['grpo']['evalListSizes']} ('all': the whole held-out split), greedy. One seed: value "
        f"[bootstrap 95 % interval over the queries]; several: mean ± population std over seeds. tied: share of "
        f"lists whose predictions are all equal (tau counts them as 0). '-': undefined or not measured. "
        f"Total {total / 60:.1f} min (jobs reused from --workdir count 0). "
        f"Every RL job's evaluation before training equals the SFT row's: {all(same_start)}."
    )
    default_recipe = args.recipe.resolve() == (REPO / "examples" / "smollm2-afinn.yaml").resolve()
    command = (f"Reproduce: `.venv/bin/python bench/bench_learning.py --seeds {' '.join(map(str, args.seeds))}"
               + ("" if default_recipe else f" --recipe {args.recipe}")
               + (f" --sft-steps {args.sft_steps}" if args.sft_steps is not None else "")
               + (f" --rl-steps {args.rl_steps}" if args.rl_steps is not None else "")
               + (f" --rows {' '.join(args.rows)}" if set(args.rows) != set(RL_ROWS) else "")
               + (f" --eval-queries {args.eval_queries}" if args.eval_queries != "all" else "")
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
