"""The final model and its report: adapter, merged model, processor, metrics, plots, REPORT.md.

Layout under ``output.uri`` (uploaded through the store, manifest last)::

    adapter/      the LoRA adapter (PEFT format; absent for full fine-tuning)
    model/        the merged model + processor/tokenizer: the model loads with plain from_pretrained; a
                  Qwen-VL processor with models.load_exported_processor (AutoProcessor needs torchvision)
    metrics.json  evaluation before and after each stage (rarl.api.reports.RunMetrics)
    history.json  per-step training log (reward terms, spread, mutation rate, drift diagnostics)
    predictions.jsonl  the last evaluation's queries: target, parsed prediction and the answer text, one per
                  line (per-query figures: bootstrap intervals, error analysis)
    plots/rewards.png, plots/eval.png, plots/pred_vs_target.png, plots/drift.png (GRPO stages)
    REPORT.md     configuration, the paper-style table, sample answers, the plots
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarl.api.reports import RunMetrics
from rarl.api.settings import config_hash
from rarl.storage import upload_tree
from rarl_trainer.config import json_default, transfer_progress

TERM_KEYS = {
    "total": "reward",
    "regression": "rewards/regression/mean",
    "ranking": "rewards/ranking/mean",
    "format": "rewards/format/mean",
    "total before RMO": "rarl/reward_before_rmo",
}


def save_model(loaded, dest: Path, merge: bool = True) -> dict[str, str]:
    """Save the adapter and the merged model (with processor) under ``dest``; returns what was written.

    The model is written in ``loaded.dtype`` (spec.model.dtype): full fine-tuning's float32 master
    weights are cast, in place (training is over).
    """
    written: dict[str, str] = {}
    model = loaded.model
    is_peft = hasattr(model, "peft_config")
    if is_peft:
        model.save_pretrained(dest / "adapter")
        _sort_target_modules(dest / "adapter" / "adapter_config.json")
        loaded.processor.save_pretrained(dest / "adapter")
        written["adapter"] = "adapter"
        if merge:
            merged = model.merge_and_unload()
            loaded.model = merged
            model = merged
    if not is_peft or merge:
        if loaded.dtype is not None and model.dtype != loaded.dtype:
            model.to(loaded.dtype)
        # Training leaves config.use_cache False (the KV cache is off while training); the exported model is for
        # generation, and one final checkpoint exports one config whether or not this process trained.
        model.config.use_cache = True
        model.save_pretrained(dest / "model")
        loaded.processor.save_pretrained(dest / "model")
        if loaded.tokenizer is not loaded.processor:
            loaded.tokenizer.save_pretrained(dest / "model")
        written["model"] = "model"
    return written


def _sort_target_modules(config_file: Path) -> None:
    """PEFT writes ``target_modules`` (a set) in hash order, which differs per process: sort it so one
    training exports one byte-identical adapter."""
    config = json.loads(config_file.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True))


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


@dataclass
class RunSummary:
    """What the report says about the run besides its metrics (from the job spec and the trainer)."""

    job_name: str
    spec: Any  # RARLJobSpec
    list_sizes: list[int]
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # eval label -> a few rows
    train_seconds: float | None = None  # all attempts, up to the newest checkpoint

    def stage_ends(self) -> list[tuple[str, int]]:
        out, step = [], 0
        for stage in self.spec.stages:
            step += stage.steps
            out.append((stage.name, step))
        return out


def _config_lines(summary: RunSummary) -> list[str]:
    spec = summary.spec
    lora = spec.model.lora
    how = f"LoRA r={lora.r}, alpha={lora.alpha}" if lora.enabled else "full fine-tuning"
    data = f"`{spec.dataset.train}`" if spec.dataset.train else "from the synthetic generator"
    g = spec.grpo
    lines = [
        f"Model `{spec.model.base}` ({how}, {spec.model.dtype}); data {data} ({spec.dataset.format}, "
        f"{spec.dataset.modality}); {spec.total_steps()} steps in {len(spec.stages)} stages"
        + (f", {summary.train_seconds / 60:.1f} min of training (all attempts)." if summary.train_seconds else "."),
        "",
        f"GRPO: G={g.num_generations}, batch {g.per_device_batch_size} per device x {g.gradient_accumulation_steps} "
        f"accumulation, beta {g.beta}, temperature {g.temperature}, {g.max_completion_length} completion tokens, "
        f"seed {g.seed}; reward delta {spec.delta():g}.",
        "",
        "| stage | kind | steps | list sizes | learning rate | accumulation | RMO p |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in spec.stages:
        rmo = f"{stage.rmo.probability:g}" if stage.kind == "grpo" and stage.rmo.enabled else "-"
        lines.append(f"| {stage.name} | {stage.kind} | {stage.steps} | {', '.join(map(str, stage.list_sizes))} | "
                     f"{stage.learning_rate or g.learning_rate:g} | {g.accumulation(stage)} | {rmo} |")
    return lines


def _sample_lines(samples: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines: list[str] = []
    for label, rows in samples.items():
        lines += ["", f"### {label}", ""]
        for r in rows:
            text = " ".join(str(r.get("completion", "")).split())
            text = text if len(text) <= 240 else text[:237] + "..."
            lines.append(f"- target {r['target']}, predicted {r.get('pred')}: `{text.replace('`', chr(39))}`")
    return lines


def report_markdown(metrics: RunMetrics, summary: RunSummary, history: list[dict[str, Any]] | None = None) -> str:
    """The paper-style table (n = 1 MAE/accuracy/SRCC/PLCC, tau per list size), configuration, samples, plots."""
    rows = [("baseline", metrics.baseline or {})]
    for name, m in metrics.stages.items():
        if m.end:
            rows.append((f"after {name}", m.end))
    taus = [n for n in summary.list_sizes if n >= 2]
    head = ["model", "n=1 MAE", "n=1 acc", "n=1 acc±1", "SRCC", "PLCC"] + [f"tau n={n}" for n in taus] + ["invalid"]
    lines = [
        f"# RARL report: {summary.job_name}",
        "",
        *_config_lines(summary),
        "",
        "## Evaluation",
        "",
        "Greedy answers on the evaluation split (the same queries at every evaluation).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for label, m in rows:
        cells = [label, _fmt(m.get("n1/mae")), _fmt(m.get("n1/acc")), _fmt(m.get("n1/acc_within_1")),
                 _fmt(m.get("n1/srcc")), _fmt(m.get("n1/plcc"))]
        cells += [_fmt(m.get(f"n{n}/tau")) for n in taus]
        cells.append(_fmt(m.get("invalid_rate")))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "MAE in target units; accuracy after rounding to the target precision; tau is Kendall's tau-b",
              "per list, averaged; invalid = share of answers that did not parse. A '-' is undefined, not zero:",
              "MAE needs one parsed n=1 answer, SRCC/PLCC need two and are undefined when the predictions (or the",
              "targets) are all equal, tau needs a parsed list whose values are not all tied."]
    drift = _drift_lines(history or [])
    if drift:
        lines += ["", "## GRPO step diagnostics", "", *drift]
    if summary.samples:
        lines += ["", "## Sample answers", *_sample_lines(summary.samples)]
    lines += ["", "## Plots", "", "![reward terms per step](plots/rewards.png)",
              "![evaluation over training](plots/eval.png)", "![predictions against targets](plots/pred_vs_target.png)"]
    if drift:
        lines.append("![collapse diagnostics per GRPO step](plots/drift.png)")
    lines.append("")
    return "\n".join(lines)


DRIFT_KEYS = {
    "bias": "rarl/bias",
    "spread ratio": "rarl/spread_ratio",
    "zero-spread groups": "rarl/zero_spread_groups",
    "KL": "kl",
    "entropy": "entropy",
}
"""The collapse diagnostics of a GRPO step (``rarl_trainer.drift``; KL and entropy are TRL's), by label."""


def _drift_lines(history: list[dict[str, Any]]) -> list[str]:
    """First and last step of each GRPO stage: has the answers' bias grown, has their spread shrunk?"""
    stages: dict[str, list[dict[str, Any]]] = {}
    for h in history:
        if "rarl/bias" in h or "rarl/zero_spread_groups" in h:
            stages.setdefault(str(h.get("stage")), []).append(h)
    if not stages:
        return []
    head = ["stage", "step", *DRIFT_KEYS]
    lines = ["Bias: mean (prediction - target) of the step's rollouts; spread ratio: std of their predictions / std",
             "of the targets (1: spread like the targets, 0: one answer for everything); zero-spread groups: share",
             "of groups whose rewards are all equal before RMO. A recipe that drifts shows a growing |bias| or a",
             "falling spread ratio within a few steps.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in stages.items():
        for h in (rows[0], rows[-1]) if len(rows) > 1 else rows:
            cells = [name, str(h.get("global_step", "")), *(_fmt(h.get(k)) for k in DRIFT_KEYS.values())]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_drift(history: list[dict[str, Any]], path: Path, summary: RunSummary) -> bool:
    """The collapse diagnostics per GRPO step (False, and no file, when no step logged them)."""
    if not any("rarl/bias" in h for h in history):
        return False
    import matplotlib  # deferred: only the export draws; the Agg backend must be chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for ax, keys in ((top, ("bias",)), (bottom, ("spread ratio", "zero-spread groups", "KL", "entropy"))):
        for label in keys:
            pts = [(h["global_step"], h[DRIFT_KEYS[label]]) for h in history if DRIFT_KEYS[label] in h]
            if pts:
                xs, ys = zip(*pts, strict=False)
                ax.plot(xs, ys, label=label, linewidth=1.2, marker=".")
        _mark_stages(ax, summary)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
    top.axhline(0.0, color="grey", linewidth=0.8)
    top.set_ylabel("bias (target units)")
    bottom.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    bottom.set_xlabel("global step")
    top.set_title("Collapse diagnostics of the GRPO rollouts")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _mark_stages(ax, summary: RunSummary) -> None:
    for name, end in summary.stage_ends()[:-1]:
        ax.axvline(end + 0.5, color="black", linewidth=0.8, linestyle="--")
        ax.text(end + 0.5, 1.0, f" end of {name}", transform=ax.get_xaxis_transform(), fontsize=7, va="top")


def plot_rewards(history: list[dict[str, Any]], path: Path, summary: RunSummary) -> None:
    import matplotlib  # deferred: only the export draws; the Agg backend must be chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, key in TERM_KEYS.items():
        pts = [(h["global_step"], h[key]) for h in history if key in h]
        if pts:
            xs, ys = zip(*pts, strict=False)
            ax.plot(xs, ys, label=label, linewidth=1.2)
    ax.set_xlabel("global step")
    ax.set_ylabel("mean reward")
    _mark_stages(ax, summary)
    mut = [(h["global_step"], h["rarl/mutation_rate"]) for h in history if "rarl/mutation_rate" in h]
    if mut:  # a rate, not a reward: its own axis
        xs, ys = zip(*mut, strict=False)
        ax2 = ax.twinx()
        ax2.plot(xs, ys, label="RMO mutation rate", linestyle=":", color="grey")
        ax2.set_ylabel("mutation rate (share of groups)")
        ax2.set_ylim(0, 1.05)
        ax2.legend(fontsize=8, loc="lower right")
    ax.set_title("Reward terms per step")
    if ax.get_legend_handles_labels()[0]:  # an sft-only run logs no reward
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_eval(metrics: RunMetrics, path: Path, summary: RunSummary) -> None:
    """Evaluation metrics at baseline (step 0), during training (evalEverySteps) and at each stage's end."""
    import matplotlib  # deferred: only the export draws; the Agg backend must be chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: list[tuple[int, dict[str, float]]] = [(0, metrics.baseline or {})]
    points += [(m.global_step, m.metrics()) for m in metrics.during or []]
    ends = dict(summary.stage_ends())
    points += [(ends[name], m.end) for name, m in metrics.stages.items() if m.end and name in ends]
    points.sort(key=lambda p: p[0])
    keys = ["invalid_rate", "n1/acc", "n1/srcc"] + [f"n{n}/tau" for n in summary.list_sizes if n >= 2]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        pts = [(x, m[key]) for x, m in points if key in m]
        if pts:
            xs, ys = zip(*pts, strict=False)
            ax.plot(xs, ys, marker="o", label=key, linewidth=1.2)
    ax.set_xlabel("global step")
    ax.set_ylabel("rate / correlation")
    _mark_stages(ax, summary)
    mae = [(x, m["n1/mae"]) for x, m in points if "n1/mae" in m]
    if mae:
        xs, ys = zip(*mae, strict=False)
        ax2 = ax.twinx()
        ax2.plot(xs, ys, marker="s", color="black", linestyle="-.", label="n1/mae")
        ax2.set_ylabel("n=1 MAE (target units)")
        ax2.legend(fontsize=8, loc="lower right")
    ax.set_title("Evaluation over training")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_predictions(rows: list[dict[str, Any]], path: Path) -> None:
    """Predicted against true values of the last evaluation; a point's size and label give its count."""
    import matplotlib  # deferred: only the export draws; the Agg backend must be chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts: dict[tuple[float, float], int] = {}
    for r in rows:
        if r.get("pred") is None:
            continue
        for x, y in zip(r["target"], r["pred"], strict=False):
            counts[(float(x), float(y))] = counts.get((float(x), float(y)), 0) + 1
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if counts:
        xs, ys = zip(*counts, strict=False)
        sizes = [12 * c for c in counts.values()]
        ax.scatter(xs, ys, s=sizes, alpha=0.5)
        for (x, y), c in counts.items():
            if c > 1:
                ax.annotate(str(c), (x, y), fontsize=7, ha="center", va="center")
        lo, hi = min(xs + ys), max(xs + ys)
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
    ax.set_xlabel("target")
    ax.set_ylabel("prediction")
    valid = sum(r.get("pred") is not None for r in rows)
    ax.set_title(f"Eval predictions ({valid}/{len(rows)} parsed)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_metrics(path: Path, metrics: RunMetrics) -> None:
    """``metrics.json`` (``rarl.api.reports.RunMetrics``)."""
    path.write_text(json.dumps(metrics.to_json(), indent=2))


def write_reports(dest: Path, metrics: RunMetrics, history: list[dict[str, Any]],
                  eval_rows: list[dict[str, Any]], summary: RunSummary) -> None:
    """metrics.json, history.json, plots and REPORT.md into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    write_metrics(dest / "metrics.json", metrics)
    (dest / "history.json").write_text(json.dumps(history, default=json_default))
    with (dest / "predictions.jsonl").open("w") as out:
        for r in eval_rows:
            out.write(json.dumps({k: r[k] for k in ("target", "pred", "completion") if k in r},
                                 default=json_default) + "\n")
    plots = dest / "plots"
    plots.mkdir(exist_ok=True)
    plot_rewards(history, plots / "rewards.png", summary)
    plot_eval(metrics, plots / "eval.png", summary)
    plot_predictions(eval_rows, plots / "pred_vs_target.png")
    plot_drift(history, plots / "drift.png", summary)
    (dest / "REPORT.md").write_text(report_markdown(metrics, summary, history))


def export_run(loaded, dest: Path, output_uri: str, storage, metrics: RunMetrics,
               history: list[dict[str, Any]], eval_rows: list[dict[str, Any]], summary: RunSummary,
               merge: bool = True) -> str:
    """Write everything locally, then upload it to ``output_uri`` (files first, manifest last).

    Rank 0 calls it after the run's last collective (``loop.Run.execute``): the other ranks have
    exited, so however long the merge and the upload take, no rank waits for them in a collective.
    """
    save_model(loaded, dest, merge=merge)
    write_reports(dest, metrics, history, eval_rows, summary)
    upload_tree(dest, output_uri, settings=storage, manifest=True, step=summary.spec.total_steps(),
                stage=summary.spec.stages[-1].name, config_hash=config_hash(summary.spec),
                progress=transfer_progress("upload"))
    return output_uri
