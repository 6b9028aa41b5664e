"""``rarlctl eval``: metrics of a predictions file (JSONL rows of predictions and targets).

Each line: ``{"pred": [v1, ...] | null, "target": [y1, ...]}`` or ``{"completion": "<model text>",
"target": [...]}`` (parsed like the reward does). Lists even for one item (``[5]``, not ``5``): as predict
writes them, so a row that is not one is reported instead of being guessed at.
The metrics are pure Python (``rarl.metrics``): no numpy, no trainer, so a plain ``pip install rarl`` runs it.
Exit codes: 0 ok, 1 invalid input (each bad row reported with its line number: not JSON, non-finite
numbers, as many predictions as targets), 2 usage (an unreadable file, a bad ``-o`` or ``--precision``).
Errors are plain ``error: ...`` lines, one each (never wrapped), as every verb prints them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from rarl.cli.app import EXIT_INVALID, EXIT_USAGE, OPTIONS


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _one_item_hint(value: Any) -> str:
    return f" (one item: [{value}], not {value})" if _is_number(value) else ""


def _check_row(row: Any) -> str | None:
    """Why a row is not a valid evaluation row (None when it is)."""
    if not isinstance(row, dict):
        return "expected a JSON object with 'target' and 'pred' (or 'completion')"
    target = row.get("target")
    if not isinstance(target, list) or not target:
        return "'target' must be a non-empty list of numbers" + _one_item_hint(target)
    if not all(_is_number(t) and math.isfinite(t) for t in target):
        return "'target' must contain finite numbers only"
    if "pred" in row:
        pred = row["pred"]
        if pred is None:
            return None
        if not isinstance(pred, list) or not all(_is_number(p) for p in pred):
            return "'pred' must be a list of numbers or null" + _one_item_hint(pred)
        if not all(math.isfinite(p) for p in pred):
            return "'pred' must contain finite numbers only (null marks an invalid answer)"
        if len(pred) != len(target):
            return f"'pred' has {len(pred)} values for {len(target)} targets"
        return None
    if "completion" in row:
        return None if isinstance(row["completion"], str) else "'completion' must be a string"
    return "missing 'pred' (or 'completion')"


def _fmt(key: str, value: float) -> str:
    """Counts as integers, every other metric with 4 decimals (a metric of 1 reads 1.0000, like its neighbours)."""
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if key == "count" or key.endswith("/count"):
        return str(int(value))
    return f"{value:.4f}"


def _error(message: str, code: int) -> typer.Exit:
    """One ``error:`` line on stderr (typer.echo: never wrapped at the terminal width) and the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def eval_command(
    predictions: Path = typer.Option(
        ..., "--predictions", "-p", metavar="FILE",
        help='JSONL file: one row per query with a "pred" and a "target" list of numbers.',
    ),
    output: str | None = typer.Option(None, "-o", "--output", metavar="table|json|yaml",
                                      help="Output format: table, json or yaml (default: the global -o, table)."),
    precision: float = typer.Option(1.0, "--precision", metavar="STEP",
                                    help="Rounding step for exact / within-k accuracy."),
) -> None:
    """Compute RARL metrics (MAE, accuracy, SRCC, PLCC, Kendall tau per list size) from predictions."""
    output = output or OPTIONS.output.value  # one rule for -o on every verb that prints data
    if output not in ("table", "json", "yaml"):
        raise _error(f"-o: unknown output format {output!r}; use table, json or yaml", EXIT_USAGE)
    if not precision > 0:
        raise _error("--precision must be > 0", EXIT_USAGE)
    try:
        text = predictions.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _error(f"cannot read {predictions}: {reason}", EXIT_USAGE) from None

    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {lineno}: not JSON ({exc.msg})")
            continue
        why = _check_row(row)
        if why:
            problems.append(f"line {lineno}: {why}")
            continue
        rows.append(row)
    if problems:
        for p in problems[:50]:
            typer.echo(f"error: {predictions}: {p}", err=True)
        if len(problems) > 50:
            typer.echo(f"error: {predictions}: ... and {len(problems) - 50} more bad rows", err=True)
        raise typer.Exit(EXIT_INVALID)
    if not rows:
        raise _error(f"{predictions}: no prediction rows", EXIT_INVALID)

    from rarl.metrics import evaluate

    metrics = evaluate(rows, precision=precision)
    clean = {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
    if output == "json":
        typer.echo(json.dumps(clean, indent=2))
    elif output == "yaml":
        import yaml

        typer.echo(yaml.safe_dump(clean, sort_keys=False))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"RARL metrics: {predictions.name}", box=None, pad_edge=False, header_style="bold",
                      title_justify="left")  # the style of describe's tables
        table.add_column("METRIC")
        table.add_column("VALUE", justify="right")
        for key, value in metrics.items():
            table.add_row(key, _fmt(key, value))
        Console(highlight=False, soft_wrap=True).print(table)
