"""``rarlctl predict``: an exported model's answers on items, as JSONL rows ``rarlctl eval`` reads.

The model is a job's export (by job name: its ``status.modelURI``) or an export location (a folder,
``file://`` or ``s3://``, downloaded and verified once into the cache). The items, the prompt and
the target range come from the job's ``dataset`` spec (``-f`` for a location); ``--data`` points
the same spec at other items. The model runs in the trainer's own process (``python -m rarl_trainer.predict``,
the ``[trainer]`` extra: torch): the SDK never imports the trainer. Without it, exit 2 naming what to install.
Exit codes: 0 ok; 1 an unknown job or one without an exported model yet (as ``fetch``); 2 a model, data or
option problem, or no trainer installed (one line, no traceback).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import typer

from rarl.cli.app import EXIT_INTERRUPTED, OPTIONS, CLIError, make_client, read_source
from rarl.errors import exported_model_uri

TRAINER_MODULE = "rarl_trainer.predict"
"""The trainer's entry point that runs the model (``python -m``)."""
TRAINER_EXTRA = "pip install 'rarl[trainer]'"


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
    return job or named, exported_model_uri(named)  # ModelNotExported -> exit 1


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
    _require_trainer()
    model = _local_export(model_uri, job.spec.storage)
    args = ["--model", str(model), "--split", split]
    args += ["--data", data] if data is not None else []
    for n in list_size:
        args += ["--list-size", str(n)]
    args += ["--queries", str(queries)] if queries is not None else []
    args += ["--every-item"] if every_item else []
    args += ["--max-new-tokens", str(max_new_tokens)] if max_new_tokens is not None else []
    args += ["--out", str(out)] if out is not None else []
    args += ["--debug"] if OPTIONS.debug else []
    raise typer.Exit(_run_trainer(args, job.to_yaml(include_status=False).encode()))


def _require_trainer() -> None:
    """The trainer and torch must be installed to run a model: checked before anything is downloaded or started."""
    import importlib.util

    for module in ("rarl_trainer", "torch"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise CLIError(f"rarlctl predict runs the model with the RARL trainer, which is not installed here (no "
                           f"module {module!r}); install it with: {TRAINER_EXTRA}")


def _fd(stream) -> int:
    """Our stream's file descriptor for the trainer to write to, or PIPE when it has none (in-process tests)."""
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.PIPE


def _run_trainer(args: list[str], job_document: bytes) -> int:
    """``python -P -m rarl_trainer.predict --job - ARGS`` with the job on its stdin; its exit code.

    Its rows and messages go where ours go; ``-P``: the working folder is not put on its import path.
    Ctrl-C reaches it too (it says "interrupted" and exits 130); we wait for it to end.
    """
    import signal

    stdout, stderr = _fd(sys.stdout), _fd(sys.stderr)
    proc = subprocess.Popen([sys.executable, "-P", "-m", TRAINER_MODULE, "--job", "-", *args],
                            stdin=subprocess.PIPE, stdout=stdout, stderr=stderr)
    try:
        out, err = proc.communicate(job_document)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return EXIT_INTERRUPTED
    if out:
        sys.stdout.write(out.decode())
    if err:
        sys.stderr.write(err.decode())
    code = proc.returncode
    return 128 - code if code < 0 else code  # killed by a signal: 128 + its number, as a shell says it
