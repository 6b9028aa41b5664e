"""Predictions of an exported model: the JSONL rows ``rarlctl eval`` reads.

The model is the export's merged ``model/`` folder (plain transformers, its own processor and chat
template); the items, the prompt and the target range come from a job's ``dataset`` spec. Queries
are drawn exactly as the trainer's evaluation draws them (same seed, same sizes), so predicting
the job's eval split with its ``evalQueries`` reproduces the numbers of its report; ``every_item``
asks about each item once instead (lists of one). ``python -m rarl_trainer.predict`` (``main``) is what
``rarlctl predict`` runs: the SDK does not import the trainer, it starts it.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from transformers.utils import logging as hf_logging

from rarl.answers import parse_answer
from rarl.api.types import LoRASpec, ModelSpec, VisionSpec
from rarl.api.validation import parse_job
from rarl.errors import BackendUnavailable, InvalidArgument, RARLError, StorageError
from rarl_trainer.config import ConfigError
from rarl_trainer.data import DataError, load_items
from rarl_trainer.evaluation import eval_queries, generate_answers
from rarl_trainer.models import ModelLoadError, load_model
from rarl_trainer.prompts import Query
from rarl_trainer.queries import QueryTable


class PredictError(ConfigError):
    """An export, data set or option that cannot be predicted with (a message for the user)."""


def export_model_folder(location: Path) -> Path:
    """The merged model folder of an export root (``<root>/model``) or the folder itself."""
    for folder in (location / "model", location):
        if (folder / "config.json").is_file():
            return folder
    if (location / "adapter" / "adapter_config.json").is_file():
        raise PredictError(f"{location}: the export has only a LoRA adapter (output.mergeAdapter was false); "
                           "predict needs its merged model/ folder")
    raise PredictError(f"{location}: not an exported model (no model/config.json)")


def load_export(location: Path):
    """The exported model with its processor, ready to generate (no LoRA: the adapter is merged in).

    The processor keeps the pixel range the export saved (the job's ``spec.model.vision``), so
    images are sized as in training; predicting applies no range of its own.
    """


    folder = export_model_folder(location)
    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar is noise in predict's output (its own bar stays)
    try:
        return load_model(ModelSpec(base=str(folder), dtype="float32", lora=LoRASpec(enabled=False),
                                    vision=VisionSpec(max_pixels=None)))
    except ModelLoadError as e:
        raise PredictError(str(e)) from None


def draw(items, list_sizes: Sequence[int], queries: int, seed: int, every_item: bool):
    """The queries to ask: the trainer's evaluation queries, or each item once."""
    if every_item:
        return [Query((it,)) for it in items]
    too_long = [n for n in list_sizes if n > len(items)]
    if too_long:
        raise PredictError(f"lists of {too_long[0]} need at least {too_long[0]} items; the data has {len(items)}")
    return eval_queries(items, list_sizes, queries, seed)


def predict(loaded, dataset_spec, queries, max_new_tokens: int,
            on_progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Greedy answers for ``queries``: ``{"id", "pred", "target", "completion"}`` per query."""
    if dataset_spec.modality == "image" and not loaded.is_vlm:
        raise PredictError("the data has image items but the exported model is a text model")
    table = QueryTable(list(queries), dataset_spec, dataset_spec.modality, loaded.string_content, loaded.pixels)
    texts = generate_answers(loaded, table, list(range(len(table.queries))), max_new_tokens, merged=False,
                             on_batch=on_progress)
    return [{"id": [it.id for it in q.items], "pred": parse_answer(text, q.n).values, "target": list(q.targets),
             "completion": text} for q, text in zip(table.queries, texts, strict=True)]


# --------------------------------------------------------------------------- python -m rarl_trainer.predict

EXIT_INVALID, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130  # as rarlctl's (rarl.cli.app)


def _parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(prog="python -m rarl_trainer.predict",
                                description="What `rarlctl predict` runs: an exported model's answers on a job's "
                                            "items, as JSONL rows on standard output (or --out).")
    p.add_argument("--job", required=True, help="RARLJob YAML whose dataset spec to use ('-': standard input)")
    p.add_argument("--model", required=True, help="the export's local folder (its root or its model/ folder)")
    p.add_argument("--data", default=None, help="other items in the job's dataset format (all of them are used)")
    p.add_argument("--split", choices=("eval", "train"), default="eval")
    p.add_argument("--list-size", type=int, action="append", default=[], help="items per query (repeatable)")
    p.add_argument("--queries", type=int, default=None, help="queries per list size")
    p.add_argument("--every-item", action="store_true", help="ask about every item once (lists of one)")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--out", default=None, help="write the rows here (default: standard output)")
    p.add_argument("--debug", action="store_true", help="also print the traceback of an error")
    return p.parse_args(argv)


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def _unexpected(exc: Exception, debug: bool) -> int:
    """An error as ``rarlctl`` prints it: one line and its exit code (the traceback too with --debug)."""
    if debug:
        traceback.print_exc()
    if isinstance(exc, (BackendUnavailable, StorageError, InvalidArgument)):
        return _error(str(exc))
    if isinstance(exc, RARLError):
        return _error(str(exc), EXIT_INVALID)
    return _error(f"{type(exc).__name__}: {exc}" + ("" if debug else " (run with --debug for the traceback)"))


def _predict_rows(args) -> tuple[list[dict[str, Any]] | None, int]:
    """The rows (or None and the exit code of an error already printed)."""


    job = parse_job(sys.stdin.read() if args.job == "-" else Path(args.job).read_text(),
                    origin="<stdin>" if args.job == "-" else args.job)
    spec = job.spec
    dataset, split = spec.dataset, args.split
    if args.data is not None:  # a synthetic job's items are read as a JSONL manifest of the same modality
        fmt = "jsonl" if dataset.format == "synthetic" else dataset.format
        dataset = dataset.model_copy(update={"eval": args.data, "format": fmt})
        split = "eval"
    g = spec.grpo
    sizes = list(args.list_size) or list(g.eval_list_sizes)
    try:
        items = load_items(dataset, split, storage=spec.storage).items
        chosen = draw(items, sizes, args.queries or g.eval_queries, g.seed, args.every_item)
        loaded = load_export(Path(args.model))
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), transient=args.out is None,
                      console=Console(stderr=True)) as bar:
            task = bar.add_task("predicting", total=len(chosen))
            rows = predict(loaded, dataset, chosen, args.max_new_tokens or g.max_completion_length,
                           on_progress=lambda k: bar.advance(task, k))
    except DataError as e:
        return None, _error(f"data: {e}")
    except ConfigError as e:
        return None, _error(str(e))
    return rows, 0


def main(argv: list[str] | None = None) -> int:
    """``python -m rarl_trainer.predict --job FILE --model DIR [...]``: the rows of ``rarlctl predict``.

    ``rarlctl predict`` checks its options, finds the job and the export (downloading one from s3://), then runs
    this with the job document on standard input. Exit codes and messages are rarlctl's: 0 ok; 2 a model, data or
    option problem (one line ``error: ...`` on stderr, no traceback); 1 an invalid job; 130 interrupted.
    """
    args = _parse_args(argv)
    try:
        rows, code = _predict_rows(args)
        if rows is None:
            return code
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if args.out is None:
            sys.stdout.write(text)
            return 0
        out = Path(args.out)
        try:
            out.write_text(text)
        except OSError as e:
            return _error(f"--out {out}: cannot write: {e.strerror or e}")
        valid = sum(r["pred"] is not None for r in rows)
        print(f"wrote {len(rows)} rows ({valid} parsed) to {out}; score them with: rarlctl eval -p {out}",
              file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # everything unexpected: one line, as rarlctl says it
        return _unexpected(exc, args.debug)


if __name__ == "__main__":
    sys.exit(main())
