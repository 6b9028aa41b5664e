"""``rarlctl``: validate, generate, run and follow RARL jobs (the console script's entry point).

Exit codes (``rarl.cli.app``): 0 ok; 1 a failed job, invalid input or a verb
refused for the job's phase; 2 a usage or environment problem; 124 a wait timed
out; 130 interrupted. Errors are one clear line, never a traceback (``--debug`` shows one).
Heavy imports (pydantic models, kubernetes, torch) happen inside the commands
so ``rarlctl --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

# Importing a verb module registers its commands on ``app``.
import rarl.cli.jobs
import rarl.cli.spec_verbs  # noqa: F401
from rarl.cli.app import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    OPTIONS,
    CLIError,
    app,
    hoist_global_options,
)
from rarl.cli.eval_cmd import eval_command
from rarl.cli.predict_cmd import predict_command

app.command("eval", help="Score predictions (JSONL rows of pred/target) with RARL's metrics.")(eval_command)
app.command("predict", help="Run an exported model on items: JSONL rows that rarlctl eval scores.")(predict_command)

__all__ = ["OPTIONS", "app", "main"]


def _verb_options(group, verb: str) -> set[str]:
    command = getattr(group, "commands", {}).get(verb)
    if command is None:
        return set()
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``rarlctl``: turns every error into a clear line and an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        group = typer.main.get_command(app)
        result = group.main(args=hoist_global_options(argv, lambda verb: _verb_options(group, verb)),
                            prog_name="rarlctl", standalone_mode=False)
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
        if debug:  # the traceback as well, never instead: the error line and the exit code stay the same
            import traceback

            traceback.print_exc()
        from rarl.errors import (
            BackendUnavailable,
            InvalidArgument,
            ModelNotExported,
            RARLError,
            StorageError,
            WaitTimeout,
        )

        if isinstance(exc, WaitTimeout):
            typer.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_TIMEOUT)
        if isinstance(exc, ModelNotExported):  # the job's state, not the command's use: as a failed job
            typer.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
        if isinstance(exc, (BackendUnavailable, StorageError, InvalidArgument)):
            typer.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        if isinstance(exc, RARLError):
            typer.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
        typer.echo(f"error: {type(exc).__name__}: {exc}" + ("" if debug else " (run with --debug for the traceback)"),
                   err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(result if isinstance(result, int) else EXIT_OK)
