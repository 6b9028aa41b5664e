"""The final model and its report: adapter, merged model, processor, metrics, plots, REPORT.md.

Layout under ``output.uri`` (uploaded through the store, manifest last)::

    adapter/      the LoRA adapter (PEFT format; absent for full fine-tuning)
    model/        the merged model + processor/tokenizer (loads with plain from_pretrained)
    metrics.json  evaluation before and after each stage
    history.json  per-step training log (reward terms, spread, mutation rate)
    plots/rewards.png, plots/pred_vs_target.png
    REPORT.md     the paper-style table
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rarl_trainer.config import json_default

TERM_KEYS = {
    "total": "reward",
    "regression": "rewards/regression/mean",
    "ranking": "rewards/ranking/mean",
    "format": "rewards/format/mean",
    "total before RMO": "rarl/reward_before_rmo",
}


def save_model(loaded, dest: Path, merge: bool = True) -> dict[str, str]:
    """Save the adapter and the merged model (with processor) under ``dest``; returns what was written."""
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


def report_markdown(job_name: str, metrics: dict[str, Any], list_sizes: list[int]) -> str:
    """A short report with the paper-style table (n = 1 MAE/accuracy/SRCC/PLCC, tau per list size)."""
    rows = [("baseline", metrics.get("baseline") or {})]
    for name, m in (metrics.get("stages") or {}).items():
        if m.get("end"):
            rows.append((f"after {name}", m["end"]))
    taus = [n for n in list_sizes if n >= 2]
    head = ["model", "n=1 MAE", "n=1 acc", "n=1 acc±1", "SRCC", "PLCC"] + [f"tau n={n}" for n in taus] + ["invalid"]
    lines = [
        f"# RARL report: {job_name}",
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
              "per list, averaged; invalid = share of answers that did not parse.", ""]
    return "\n".join(lines)


def plot_rewards(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, key in TERM_KEYS.items():
        pts = [(h["global_step"], h[key]) for h in history if key in h]
        if pts:
            xs, ys = zip(*pts, strict=False)
            ax.plot(xs, ys, label=label, linewidth=1.2)
    mut = [(h["global_step"], h["rarl/mutation_rate"]) for h in history if "rarl/mutation_rate" in h]
    if mut:
        xs, ys = zip(*mut, strict=False)
        ax.plot(xs, ys, label="mutation rate", linestyle=":", color="grey")
    ax.set_xlabel("global step")
    ax.set_ylabel("mean reward")
    ax.set_title("Reward terms per step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_predictions(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = [], []
    for r in rows:
        if r.get("pred") is None:
            continue
        xs.extend(r["target"])
        ys.extend(r["pred"])
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if xs:
        ax.scatter(xs, ys, s=10, alpha=0.5)
        lo, hi = min(xs + ys), max(xs + ys)
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
    ax.set_xlabel("target")
    ax.set_ylabel("prediction")
    valid = sum(r.get("pred") is not None for r in rows)
    ax.set_title(f"Eval predictions ({valid}/{len(rows)} parsed)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_reports(dest: Path, job_name: str, metrics: dict[str, Any], history: list[dict[str, Any]],
                  eval_rows: list[dict[str, Any]], list_sizes: list[int]) -> None:
    """metrics.json, history.json, plots and REPORT.md into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=2, default=json_default))
    (dest / "history.json").write_text(json.dumps(history, default=json_default))
    plots = dest / "plots"
    plots.mkdir(exist_ok=True)
    plot_rewards(history, plots / "rewards.png")
    plot_predictions(eval_rows, plots / "pred_vs_target.png")
    (dest / "REPORT.md").write_text(report_markdown(job_name, metrics, list_sizes))


def export_run(loaded, dest: Path, output_uri: str, storage, job_name: str, metrics: dict[str, Any],
               history: list[dict[str, Any]], eval_rows: list[dict[str, Any]], list_sizes: list[int],
               merge: bool = True) -> str:
    """Write everything locally, then upload it to ``output_uri`` (files first, manifest last)."""
    from rarl.storage import upload_tree

    save_model(loaded, dest, merge=merge)
    write_reports(dest, job_name, metrics, history, eval_rows, list_sizes)
    upload_tree(dest, output_uri, settings=storage, manifest=True)
    return output_uri
