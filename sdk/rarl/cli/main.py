"""``rarlctl``: validate, generate and (with later verbs) run RARL jobs.

Exit codes: 0 ok; 1 a failed job or invalid input; 2 a usage or environment
problem. Errors are one clear line, never a traceback (``--debug`` shows one).
Heavy imports (pydantic models, kubernetes, numpy) happen inside the commands
so ``rarlctl --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
import typing
from enum import Enum
from pathlib import Path

import typer

from rarl import __version__

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    name="rarlctl",
    help="Train vision-language models that predict and rank ordinal quantities with RARL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


class Backend(str, Enum):
    kubernetes = "kubernetes"
    local = "local"


class GlobalOptions:
    """Options every verb sees (set by the callback)."""

    backend: Backend = Backend.local
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    output: OutputFormat = OutputFormat.table
    debug: bool = False


OPTIONS = GlobalOptions()


class CLIError(Exception):
    """An error to print as one line and exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rarlctl {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _global(
    backend: Backend = typer.Option(Backend.local, "--backend", help="Where jobs run: kubernetes or local processes."),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", help="Path of the kubeconfig file."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context to use."),
    namespace: str | None = typer.Option(None, "-n", "--namespace", help="Namespace of the jobs."),
    output: OutputFormat = typer.Option(OutputFormat.table, "-o", "--output", help="Output format."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    OPTIONS.backend, OPTIONS.kubeconfig, OPTIONS.context = backend, kubeconfig, context
    OPTIONS.namespace, OPTIONS.output, OPTIONS.debug = namespace, output, debug


def _read_source(name: str) -> bytes:
    """Bytes of a file or of stdin ('-'); unreadable files are an environment problem (exit 2)."""
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    if not path.exists():
        raise CLIError("no such file")
    if path.is_dir():
        raise CLIError("is a directory, expected a YAML file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CLIError(f"cannot read: {exc.strerror or exc}") from None


def output_option() -> typing.Any:
    """``-o`` on a verb (kubectl style, after the verb); falls back to the global ``-o``."""
    return typer.Option(None, "-o", "--output", help="Output format: table, json or yaml.")


def output_format(local: OutputFormat | None) -> OutputFormat:
    return local or OPTIONS.output


@app.command()
def validate(
    files: list[str] = typer.Option(..., "-f", "--filename", help="RARLJob YAML file; repeatable; '-' reads stdin."),
    output: OutputFormat | None = output_option(),
) -> None:
    """Check RARLJob files: one OK line per valid document, one line per problem otherwise."""
    from rarl.api.validation import load_yaml_documents, validate_document

    results = []
    worst = EXIT_OK
    for name in files:
        label = "<stdin>" if name == "-" else name
        try:
            data = _read_source(name)
        except CLIError as exc:
            results.append({"file": label, "document": None, "name": None, "valid": False, "problems": [str(exc)]})
            worst = EXIT_USAGE
            continue
        docs, problems = load_yaml_documents(data)
        if problems:
            results.append({"file": label, "document": None, "name": None, "valid": False,
                            "problems": [str(p) for p in problems]})
            worst = max(worst, EXIT_INVALID)
            continue
        for index, doc in enumerate(docs, start=1):
            job, problems = validate_document(doc)
            name_ = job.name if job else (doc.get("metadata") or {}).get("name") if isinstance(doc, dict) else None
            results.append({"file": label, "document": index if len(docs) > 1 else None,
                            "name": name_ if isinstance(name_, str) else None,
                            "valid": job is not None, "problems": [str(p) for p in problems]})
            if job is None:
                worst = max(worst, EXIT_INVALID)
    fmt = output_format(output)
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(results, indent=2))
    elif fmt is OutputFormat.yaml:
        import yaml

        typer.echo(yaml.safe_dump(results, sort_keys=False), nl=False)
    else:
        for r in results:
            where = r["file"] + (f" (document {r['document']})" if r["document"] else "")
            if r["valid"]:
                typer.echo(f"{where}: OK RARLJob/{r['name']}")
            for problem in r["problems"]:
                typer.echo(f"{where}: {problem}")
    raise typer.Exit(worst)


@app.command()
def crd(
    reference: bool = typer.Option(False, "--reference", help="Print the Markdown field reference instead."),
) -> None:
    """Print the RARLJob CustomResourceDefinition (generated from the API types)."""
    if reference:
        from rarl.api.docs import reference_markdown

        typer.echo(reference_markdown(), nl=False)
        return
    from rarl.api.crd import crd_yaml

    typer.echo(crd_yaml(), nl=False)


@app.command()
def init(
    example: str = typer.Option("quickstart", "--example", "-e", help="Which example to write (see --list)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Write to this file instead of stdout."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    list_: bool = typer.Option(False, "--list", help="List the examples and exit."),
) -> None:
    """Write a commented example RARLJob to start from."""
    from rarl.examples import example_names, example_text

    names = example_names()
    if list_:
        for name in names:
            typer.echo(name)
        return
    if example not in names:
        raise CLIError(f"--example: unknown example {example!r}; choose one of: {', '.join(names)}")
    text = example_text(example)
    if file is None:
        typer.echo(text, nl=False)
        return
    if file.exists() and not force:
        raise CLIError(f"{file}: already exists (use --force to overwrite)")
    try:
        file.write_text(text)
    except OSError as exc:
        raise CLIError(f"{file}: cannot write: {exc.strerror or exc}") from None
    typer.echo(f"wrote {file} (example {example}); check it with: rarlctl validate -f {file}", err=True)


# Verbs defined in other modules register themselves on `app` (each imports heavy deps lazily).
import rarl.cli.jobs  # noqa: E402, F401
from rarl.cli.eval_cmd import eval_command  # noqa: E402

app.command("eval", help="Score predictions (JSONL rows of pred/target) with RARL's metrics.")(eval_command)
from rarl.cli.predict_cmd import predict_command  # noqa: E402

app.command("predict", help="Run an exported model on items: JSONL rows that rarlctl eval scores.")(predict_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``rarlctl``: turns every error into a clear line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        result = app(args=argv, prog_name="rarlctl", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except CLIError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # click usage errors and everything unexpected
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # (typer's vendored) click.ClickException
            exc.show()
            sys.exit(EXIT_USAGE)
        if debug:
            raise
        from rarl.errors import BackendUnavailable, RARLError, StorageError

        if isinstance(exc, (BackendUnavailable, StorageError)):
            typer.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        if isinstance(exc, RARLError):
            typer.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
        typer.echo(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else EXIT_OK)
