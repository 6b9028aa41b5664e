"""The typer app of ``rarlctl`` and what every verb shares: global options, output formats, exit codes.

Verb modules (``spec_verbs``, ``jobs``, ``eval_cmd``, ``predict_cmd``) import this module and
register their commands on ``app``; ``rarl.cli.main`` imports them all and runs the app. Nothing
here imports a verb module, so the CLI has no import cycle.
"""

from __future__ import annotations

import sys
import typing
from enum import Enum
from pathlib import Path

import typer

from rarl import __version__

EXIT_OK = 0
EXIT_INVALID = 1
"""Invalid input, an unknown job, a failed job, or a verb that makes no sense for the job's phase."""
EXIT_USAGE = 2
"""A usage or environment problem: bad options, no cluster, unreachable storage."""
EXIT_TIMEOUT = 124
"""``wait --timeout`` (and ``submit --wait --timeout``) ran out of time; as GNU timeout(1)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT); ``rarlctl run`` suspends the job cleanly first."""


class _Command(typer.core.TyperCommand):
    """Arguments in help as users type them: ``NAME`` (``[NAME]`` when optional), not typer's ``{NAME}`` and
    ``NAME <str>`` (Python placeholders, like the ``<list[str]>`` option metavars replace)."""

    def collect_usage_pieces(self, ctx: typing.Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: typing.Any, formatter: typing.Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((param.metavar or (param.name or "").upper(), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class _Typer(typer.Typer):
    """Every verb uses ``_Command`` (registered with ``@app.command`` in the verb modules)."""

    def command(self, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    name="rarlctl",
    help="Train vision-language models that predict and rank ordinal quantities with RARL.",
    no_args_is_help=True,
    add_completion=True,  # rarlctl --install-completion [bash|zsh|fish|powershell]
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class OutputFormat(str, Enum):
    table = "table"
    wide = "wide"  # list and get only: the table plus attempt, ETA, base model, latest checkpoint, model URI
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
    home: Path | None = None
    output: OutputFormat = OutputFormat.table
    output_given: bool = False  # -o was written (a verb that prints no data refuses it)
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
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", metavar="FILE", help="Path of the kubeconfig file."),
    context: str | None = typer.Option(None, "--context", metavar="NAME", help="Kubeconfig context to use."),
    namespace: str | None = typer.Option(
        None, "-n", "--namespace", metavar="NAMESPACE", help="Namespace of the jobs (kubernetes)."
    ),
    home: Path | None = typer.Option(
        None, "--home", metavar="DIR", help="Where local jobs keep their state (default $RARL_HOME or .rarl; local)."
    ),
    output: OutputFormat | None = typer.Option(None, "-o", "--output", help="Output format: table, wide (list, get), json or yaml."),
    debug: bool = typer.Option(False, "--debug", help="Also print the traceback of an error (its line and exit code stay)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Global options may come before or after the verb (as kubectl's do)."""
    OPTIONS.backend, OPTIONS.kubeconfig, OPTIONS.context = backend, kubeconfig, context
    OPTIONS.namespace, OPTIONS.home, OPTIONS.debug = namespace, home, debug
    OPTIONS.output, OPTIONS.output_given = output or OutputFormat.table, output is not None


# Global options that take a value, and flags; ``hoist_global_options`` moves them before the verb.
GLOBAL_VALUE_OPTIONS = ("--backend", "--kubeconfig", "--context", "-n", "--namespace", "--home", "-o", "--output")
GLOBAL_FLAGS = ("--debug",)


def hoist_global_options(argv: list[str], verb_options: typing.Callable[[str], set[str]]) -> list[str]:
    """``rarlctl get NAME -n ml`` -> ``rarlctl -n ml get NAME``: global options after the verb move before it.

    An option the verb defines itself (``predict -o FILE``, a verb's own ``-o``) stays with the verb.
    ``verb_options(verb)`` gives the option names of a verb; ``--`` ends the scan.
    """
    head: list[str] = []
    i = 0
    while i < len(argv) and argv[i].startswith("-"):  # options before the verb (with their values)
        name = argv[i].split("=", 1)[0]
        takes_value = name in GLOBAL_VALUE_OPTIONS and "=" not in argv[i]
        head.extend(argv[i:i + 1 + takes_value])
        i += 1 + takes_value
    if i >= len(argv):
        return argv
    verb, rest = argv[i], argv[i + 1:]
    own = verb_options(verb)
    moved: list[str] = []
    kept: list[str] = []
    j = 0
    while j < len(rest):
        arg = rest[j]
        if arg == "--":
            kept.extend(rest[j:])
            break
        name = arg.split("=", 1)[0]
        if name in own or name not in GLOBAL_VALUE_OPTIONS + GLOBAL_FLAGS:
            kept.append(arg)
            j += 1
            continue
        takes_value = name in GLOBAL_VALUE_OPTIONS and "=" not in arg
        moved.extend(rest[j:j + 1 + takes_value])
        j += 1 + takes_value
    return [*head, *moved, verb, *kept]


def refuse_output_option(verb: str) -> None:
    """A verb that prints no data refuses ``-o`` instead of ignoring it."""
    if OPTIONS.output_given:
        raise CLIError(f"-o/--output: `rarlctl {verb}` prints no data; drop -o")


def read_source(name: str, named: bool = True) -> bytes:
    """Bytes of a file or of stdin ('-'); unreadable files are an environment problem (exit 2).

    ``named``: the error starts with the file's name (``validate`` prints the name itself).
    """
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    where = f"{name}: " if named else ""
    if not path.exists():
        raise CLIError(f"{where}no such file")
    if path.is_dir():
        raise CLIError(f"{where}is a directory, expected a YAML file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CLIError(f"{where}cannot read: {exc.strerror or exc}") from None


def output_option() -> typing.Any:
    """``-o`` on a verb (kubectl style, after the verb); falls back to the global ``-o``."""
    return typer.Option(None, "-o", "--output", help="Output format: table, wide (list, get), json or yaml.")


def output_format(local: OutputFormat | None, wide: bool = False) -> OutputFormat:
    """The verb's ``-o``, else the global one; ``wide`` only where the verb has a wide table (never shown narrow)."""
    fmt = local or OPTIONS.output
    if fmt is OutputFormat.wide and not wide:
        raise CLIError("-o wide: only list and get have a wide table; use table, json or yaml here", EXIT_USAGE)
    return fmt


def make_client(backend: Backend | None = None):
    """The client for the global options (--backend, --kubeconfig, --context, -n, --home, env RARL_HOME).

    An option that has no meaning for the chosen backend is a usage error, never ignored.
    """
    from rarl.backends.config import KubernetesBackendConfig, LocalBackendConfig
    from rarl.client import Client

    chosen = backend or OPTIONS.backend
    if chosen is Backend.kubernetes:
        if OPTIONS.home is not None:
            raise CLIError("--home: only the local backend keeps jobs in a home folder (drop --home, or use "
                           "--backend local)")
        return Client(KubernetesBackendConfig(kubeconfig=OPTIONS.kubeconfig, context=OPTIONS.context,
                                              namespace=OPTIONS.namespace))
    for flag, value in (("-n/--namespace", OPTIONS.namespace), ("--kubeconfig", OPTIONS.kubeconfig),
                        ("--context", OPTIONS.context)):
        if value is not None:
            raise CLIError(f"{flag}: only applies to --backend kubernetes (local jobs have no cluster; "
                           "add --backend kubernetes)")
    if OPTIONS.home is not None and Path(OPTIONS.home).exists() and not Path(OPTIONS.home).is_dir():
        raise CLIError(f"--home {OPTIONS.home}: is a file; the home is the folder that holds the local jobs")
    return Client(LocalBackendConfig(home=OPTIONS.home))
