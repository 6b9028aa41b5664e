"""``rarlctl predict``: an exported model's answers on items, as JSONL rows ``rarlctl eval`` reads.

The model is a job's export (by job name: its ``status.modelURI``) or an export location (a folder,
``file://`` or ``s3://``, downloaded and verified once into the cache). The items, the prompt and
the target range come from the job's ``dataset`` spec (``-f`` for a location); ``--data`` points
the same spec at other items. torch and rarl_trainer are imported inside the command.
Exit codes: 0 ok; 1 an unknown job or one without an exported model yet (as ``fetch``); 2 a model, data or
option problem (one line, no traceback).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import typer

from rarl.cli.app import OPTIONS, CLIError, make_client, no_export_error, read_source


def _source(source: str, job_file: str | None):
    """(job, model location) from a job name or an export location (+ the job file for its dataset)."""
    from rarl.api.uri import has_scheme, local_path, names_a_path
    from rarl.api.validation import parse_job

    job = parse_job(read_source(job_file), origin=job_file) if job_file else None
    is_location = has_scheme(source) or names_a_path(source) or Path(source).exists()
    if is_location:
        if not has_scheme(source) and not local_path(source).exists():
            raise CLIError(f"{source}: no such model folder (a job name has no '/' or '.'; an export location "
                           "is a folder, file:// or s3://)")
        if job is None:
            raise CLIError(f"{source} is a model location: give the job file with -f (its dataset section says "
                           "what the items are and how to ask)")
        return job, source

    named = make_client().get(source)  # JobNotFound -> one line, exit 1
    model_uri = named.status.model_uri if named.status else None
    if not model_uri:
        raise no_export_error(source, named.status.phase if named.status else None)
    return job or named, model_uri


def _local_export(uri: str, storage) -> Path:
    from rarl.api.uri import is_s3, local_path

    if not is_s3(uri):
        path = local_path(uri)  # InvalidURI (exit 2) for another scheme or a relative file:// path
        if not path.exists():
            raise CLIError(f"{path}: no such folder")
        return path
    from rarl.storage import download_tree
    from rarl.storage.transfer import default_cache_dir

    dest = default_cache_dir() / "exports" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    return download_tree(uri, dest, settings=storage)


def predict_command(
    source: str = typer.Argument(..., metavar="SOURCE", help="Job name, or an export location (folder, file:// or s3://) with -f."),
    file: str | None = typer.Option(None, "-f", "--filename", metavar="FILE", help="RARLJob YAML whose dataset spec to use."),
    data: str | None = typer.Option(None, "--data", metavar="LOCATION", help="Other items in the job's dataset format (a JSONL "
                                                         "manifest for synthetic jobs): all of them are used."),
    split: str = typer.Option("eval", "--split", metavar="eval|train", help="eval or train split of the job's data (without --data)."),
    list_size: list[int] = typer.Option([], "--list-size", metavar="N", help="Items per query (repeatable); default: the "
                                                                      "job's grpo.evalListSizes."),
    queries: int | None = typer.Option(None, "--queries", min=1, metavar="N", help="Queries per list size, drawn as the "
                                                                      "trainer's evaluation draws them; default: "
                                                                      "the job's grpo.evalQueries."),
    every_item: bool = typer.Option(False, "--every-item", help="Ask about every item once (lists of one)."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1, metavar="N",
                                              help="Default: the job's grpo.maxCompletionLength."),
    out: Path | None = typer.Option(None, "--out", metavar="FILE", help="Write the rows here (default: standard output)."),
) -> None:
    """Run an exported model on items and write {"id", "pred", "target", "completion"} rows (JSONL)."""
    if OPTIONS.output_given:  # -o/--output keeps its global meaning after the verb too: refused, not ignored
        raise CLIError("-o/--output: `rarlctl predict` writes JSONL rows in one format; name the file to write "
                       "with --out FILE")
    if split not in ("eval", "train"):
        raise CLIError(f"--split {split!r}: expected eval or train")
    if every_item and list_size and set(list_size) != {1}:
        raise CLIError("--every-item asks about single items: drop --list-size")
    if every_item and queries is not None:
        raise CLIError("--every-item asks about every item once: drop --queries (or drop --every-item and keep "
                       "--list-size 1 --queries N)")
    if any(n < 1 for n in list_size):
        raise CLIError("--list-size must be >= 1")
    if out is not None and out.is_dir():
        raise CLIError(f"--out {out}: is a folder")
    job, model_uri = _source(source, file)
    spec = job.spec
    dataset = spec.dataset
    if data is not None:  # a synthetic job's items are read as a JSONL manifest of the same modality
        fmt = "jsonl" if dataset.format == "synthetic" else dataset.format
        dataset = dataset.model_copy(update={"eval": data, "format": fmt})
        split = "eval"
    g = spec.grpo
    sizes = list(list_size) or list(g.eval_list_sizes)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from rarl_trainer.config import ConfigError
    from rarl_trainer.data import DataError, load_items
    from rarl_trainer.predict import draw, load_export, predict

    try:
        items = load_items(dataset, split, storage=spec.storage).items
        chosen = draw(items, sizes, queries or g.eval_queries, g.seed, every_item)
        loaded = load_export(_local_export(model_uri, spec.storage))
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), transient=out is None,
                      console=Console(stderr=True)) as bar:
            task = bar.add_task("predicting", total=len(chosen))
            rows = predict(loaded, dataset, chosen, max_new_tokens or g.max_completion_length,
                           on_progress=lambda k: bar.advance(task, k))
    except DataError as e:
        raise CLIError(f"data: {e}") from None
    except ConfigError as e:
        raise CLIError(str(e)) from None
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text)
    except OSError as e:
        raise CLIError(f"--out {out}: cannot write: {e.strerror or e}") from None
    valid = sum(r["pred"] is not None for r in rows)
    typer.echo(f"wrote {len(rows)} rows ({valid} parsed) to {out}; score them with: rarlctl eval -p {out}", err=True)
