"""The job verbs of ``rarlctl``: submit, get, list, describe, logs, wait, suspend, resume, delete, fetch, run.

Each verb is a thin layer over ``rarl.Client``; what is printed depends on
``-o`` (table for people, json/yaml for machines).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from rarl.api.vocabulary import CONDITION_FAILED
from rarl.cli.app import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    OPTIONS,
    Backend,
    CLIError,
    OutputFormat,
    app,
    make_client,
    no_export_error,
    output_format,
    output_option,
    read_source,
    refuse_output_option,
)
from rarl.errors import InvalidSpec, JobFinished, RARLError


def _console(width: int | None = None):
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, width=width)


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    from datetime import datetime, timezone

    try:
        then = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return "-"
    seconds = max(0, int((datetime.now(timezone.utc) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


COLUMNS = ("NAME", "PHASE", "STAGE", "STEP", "REWARD", "RESTARTS", "AGE")
WIDE_COLUMNS = (*COLUMNS, "ATTEMPT", "ETA", "BASE MODEL", "LATEST CHECKPOINT", "MODEL URI")


def _row(job, wide: bool = False) -> list[str]:
    s = job.status
    created = (job.metadata.model_extra or {}).get("creationTimestamp") or s.start_time
    step = f"{s.step or 0}/{s.total_steps or job.spec.total_steps()}"
    reward = f"{s.reward:.3f}" if s.reward is not None else "-"
    row = [job.name, s.phase or "Pending", s.stage or "-", step, reward, str(s.restarts), _age(created)]
    if wide:
        eta = f"{s.eta_seconds:.0f}s" if s.eta_seconds is not None and s.phase == "Running" else "-"
        row += [str(s.attempt), eta, job.spec.model.base, s.latest_checkpoint or "-", s.model_uri or "-"]
    return row


def _print_jobs(jobs: list, fmt: OutputFormat, single: bool = False) -> None:
    if fmt in (OutputFormat.table, OutputFormat.wide):
        from rich.table import Table

        wide = fmt is OutputFormat.wide
        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in WIDE_COLUMNS if wide else COLUMNS:
            table.add_column(col, no_wrap=wide)
        for job in jobs:
            table.add_row(*_row(job, wide))
        if jobs:  # a wide table is never cut to the terminal (kubectl's -o wide is not either)
            _console(width=100_000 if wide else None).print(table)
        else:
            typer.echo("No jobs found.", err=True)
        return
    docs: Any = [j.to_dict() for j in jobs]
    # one job is its document; several are a v1 List, as kubectl prints them (and as submit --dry-run does)
    docs = docs[0] if single else {"apiVersion": "v1", "kind": "List", "items": docs}
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(docs, indent=2))
    else:
        import yaml

        typer.echo(yaml.safe_dump(docs, sort_keys=False), nl=False)


def _job_exit(job) -> int:
    phase = job.status.phase
    return EXIT_INVALID if phase == "Failed" else EXIT_OK


def _failure_text(job) -> str:
    for c in reversed(job.status.conditions):  # every failure sets Failed; its reason says which kind
        if c.status == "True" and c.type == CONDITION_FAILED:
            return c.message or "" if c.reason in (None, c.type) else f"{c.reason}: {c.message}"
    return "job failed"


# --------------------------------------------------------------------------- verbs


@app.command()
def submit(
    file: str = typer.Option(..., "-f", "--filename", metavar="FILE", help="RARLJob YAML file ('-' reads stdin)."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the job succeeds or fails (exit 1 on failure)."),
    timeout: float | None = typer.Option(None, "--timeout", metavar="SECONDS", min=0, help="With --wait: give up after this many seconds (0: look once)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the Kubernetes manifests the operator would create."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress while waiting (a bar on a terminal, "
                               "otherwise one line per step at most every 10 s)."),
    output: OutputFormat | None = output_option(),
) -> None:
    """Validate a RARLJob and start it on the chosen backend."""
    from rarl.api.validation import parse_job

    label = "<stdin>" if file == "-" else file
    job = parse_job(read_source(file), origin=label)
    if dry_run:  # the Kubernetes manifests, whichever the backend: what a cluster needs is checked too
        from rarl.api.validation import cluster_problems

        if problems := cluster_problems(job):
            raise InvalidSpec(problems)
        _print_manifests(job, output_format(output))
        return
    client = make_client()
    say = _earlier_run_notice(job, _earlier_run(job)) if client.backend.name == "local" else None
    job = _submit(client, job)
    fmt = output_format(output)
    if fmt is OutputFormat.table:
        typer.echo(f"rarljob/{job.name} submitted ({client.backend.name} backend)")
        if say:
            typer.echo(say)
    else:
        _print_jobs([job], fmt, single=True)
    if wait:
        job = _wait_with_progress(client, job.name, timeout, quiet=quiet)
        raise typer.Exit(_job_exit(job))


def _submit(client, job):
    """``client.submit`` without its ``ResumeNotice`` warning: the CLI has printed that line itself (``say``)."""
    import warnings

    from rarl.errors import ResumeNotice

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResumeNotice)
        return client.submit(job)


def _earlier_run(job):
    """The newest checkpoint at a local job's checkpoint.uri (relative paths as the local backend reads them)."""
    from rarl.backends.local import absolutize
    from rarl.resume import earlier_run

    return earlier_run(absolutize(job, Path.cwd()))


def _earlier_run_notice(job, earlier) -> str | None:
    """What the job will do with that checkpoint; a start the trainer would refuse exits 2 here."""
    from rarl.resume import notice, refusal

    if earlier is None:
        return None
    refused = refusal(job, earlier)
    if refused:
        raise CLIError(refused)
    return notice(job, earlier)


def _print_manifests(job, fmt: OutputFormat) -> None:
    from rarl.manifests import Defaults, all_children

    docs = [job.to_dict(include_status=False), *all_children(job, uid="<uid>", attempt=0, restarts=0,
                                                               defaults=Defaults())]
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}, indent=2))
        return
    import yaml

    typer.echo(yaml.safe_dump_all(docs, sort_keys=False), nl=False)


@app.command()
def get(name: str = typer.Argument(..., metavar="NAME", help="Job name."), output: OutputFormat | None = output_option()) -> None:
    """Show one job: phase, stage, step, reward."""
    _print_jobs([make_client().get(name)], output_format(output, wide=True), single=True)


@app.command("list")
def list_(
    label: list[str] = typer.Option([], "-l", "--selector", metavar="KEY=VALUE", help="Only jobs with this label (key=value); repeatable."),
    output: OutputFormat | None = output_option(),
    watch: bool = typer.Option(False, "-w", "--watch", help="After the list, print a row whenever a job changes "
                               "(Ctrl-C stops)."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, metavar="SECONDS", help="Seconds between polls with --watch."),
) -> None:
    """List jobs."""
    labels = {}
    for item in label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--selector {item!r}: expected key=value")
        labels[key] = value
    client = make_client()
    if OPTIONS.home is not None and not Path(OPTIONS.home).exists():  # asked for by name: a typo is not "no jobs"
        raise CLIError(f"--home {OPTIONS.home}: no such folder (no local job was ever submitted with this home)")
    fmt = output_format(output, wide=True)
    jobs = client.list(labels=labels or None)
    _print_jobs(jobs, fmt)
    if watch:
        _watch(client, labels or None, fmt, jobs, interval)


def _watch(client, labels: dict[str, str] | None, fmt: OutputFormat, jobs: list, interval: float) -> None:
    """kubectl get -w: one line (table row, or a JSON/YAML document) per job whose state changed."""
    wide = fmt is OutputFormat.wide

    def key(job) -> list[str]:
        row = _row(job, wide)
        return row[:6] + row[7:]  # everything but AGE, which changes on every poll

    seen = {job.name: key(job) for job in jobs}
    while True:
        time.sleep(interval)
        for job in client.list(labels=labels):
            if seen.get(job.name) != key(job):
                seen[job.name] = key(job)
                if fmt in (OutputFormat.table, OutputFormat.wide):
                    typer.echo("  ".join(_row(job, wide)))
                else:
                    _print_jobs([job], fmt, single=True)


@app.command()
def describe(name: str = typer.Argument(..., metavar="NAME", help="Job name."), output: OutputFormat | None = output_option()) -> None:
    """Everything about a job: progress, conditions, metrics, checkpoints and events."""
    client = make_client()
    job = client.get(name)
    events = client.events(name)
    checkpoints = _checkpoints(job)
    fmt = output_format(output)
    if fmt is not OutputFormat.table:
        doc = {"job": job.to_dict(), "events": [e.to_dict() for e in events], "checkpoints": checkpoints}
        if fmt is OutputFormat.json:
            typer.echo(json.dumps(doc, indent=2, default=str))
        else:
            import yaml

            typer.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)
        return
    from rich.table import Table

    console = _console()
    s = job.status
    total = s.total_steps or job.spec.total_steps()
    lines = [
        ("Name", job.name), ("Namespace", job.metadata.namespace or "-"), ("Backend", client.backend.name),
        ("Phase", s.phase or "Pending"),
        ("Stage", s.stage or "-"), ("Step", f"{s.step or 0}/{total}"),
        ("Reward", f"{s.reward:.4f}" if s and s.reward is not None else "-"),
        ("ETA", f"{s.eta_seconds:.0f} s" if s and s.eta_seconds is not None else "-"),
        ("Attempt", str(s.attempt)), ("Restarts", f"{s.restarts}/{job.spec.run_policy.max_restarts}"),
        ("Model", job.spec.model.base), ("Stages", ", ".join(f"{st.name} ({st.kind}, {st.steps} steps)"
                                                            for st in job.spec.stages)),
        ("Checkpoints", job.spec.checkpoint.uri), ("Latest checkpoint", s.latest_checkpoint or "-"),
        ("Output", job.spec.output.uri), ("Model URI", s.model_uri or "-"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        console.print(f"[bold]{key + ':':<{width + 1}}[/bold] {value}")
    if s and s.conditions:
        table = Table(title="Conditions", box=None, header_style="bold", title_justify="left")
        for col in ("TYPE", "STATUS", "REASON", "MESSAGE", "SINCE"):
            table.add_column(col)
        for c in s.conditions:
            table.add_row(c.type, c.status, c.reason or "", c.message or "", _age(c.last_transition_time))
        console.print(table)
    if s and s.metrics:
        table = Table(title="Metrics", box=None, header_style="bold", title_justify="left")
        table.add_column("METRIC")
        table.add_column("VALUE", justify="right")
        for key in sorted(s.metrics):
            table.add_row(key, f"{s.metrics[key]:.4f}")
        console.print(table)
    if checkpoints:
        table = Table(title="Checkpoints", box=None, header_style="bold", title_justify="left")
        for col in ("STEP", "STAGE", "URI"):
            table.add_column(col)
        for c in checkpoints:
            table.add_row(str(c["step"]), c["stage"] or "-", c["uri"])
        console.print(table)
    if events:
        table = Table(title="Events", box=None, header_style="bold", title_justify="left")
        for col in ("TYPE", "REASON", "AGE", "MESSAGE"):
            table.add_column(col)
        for e in events:
            table.add_row(e.type, e.reason, _age(e.time), e.message)
        console.print(table)


def _checkpoints(job) -> list[dict]:
    """Complete checkpoints of the job (an unreachable store is shown as none, not as an error)."""
    try:
        from rarl.storage.checkpoints import CheckpointStore

        store = CheckpointStore(job.spec.checkpoint.uri, settings=job.spec.storage)
        return [{"step": c.step, "stage": c.stage, "uri": getattr(c, "uri", "")} for c in store.list()]
    except Exception:
        return []


@app.command()
def logs(
    name: str = typer.Argument(..., metavar="NAME", help="Job name."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines until the job stops."),
    node: int = typer.Option(0, "--node", metavar="INDEX", help="Which node's trainer (0 = rank 0)."),
    attempt: int | None = typer.Option(None, "--attempt", min=1, metavar="K", help="An earlier attempt's log (default: the current one)."),
) -> None:
    """Print the trainer's log of the current attempt (or of --attempt K)."""
    refuse_output_option("logs")
    for line in make_client().logs(name, follow=follow, node=node, attempt=attempt):
        typer.echo(line)


PLAIN_STEP_SECONDS = 10.0
"""Without a terminal: at most one line per this many seconds while only the step moves (phase and stage changes
always print); the environment variable ``RARL_PROGRESS_SECONDS`` sets another (0: every step)."""
PLAIN_HEARTBEAT_SECONDS = 60.0
"""Without a terminal: the latest line again after this many seconds without a change (an evaluation, a restart), so
a CI runner that stops silent jobs sees the job alive."""


def _progress_seconds() -> float:
    import os

    raw = os.environ.get("RARL_PROGRESS_SECONDS")
    if raw is None:
        return PLAIN_STEP_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise CLIError(f"RARL_PROGRESS_SECONDS must be a number of seconds >= 0, not {raw!r}")
    return value


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def progress_line(job, elapsed: float) -> str:
    """One plain line of a job's progress: phase, stage, step/total, reward, eta, elapsed (for logs, not terminals)."""
    s = job.status
    phase = s.phase or "Pending"
    parts = [f"rarljob/{job.name}", phase]
    if s and s.stage:
        parts.append(f"stage {s.stage}")
    total = s.total_steps or job.spec.total_steps()
    parts.append(f"step {s.step or 0}/{total}")
    if s and s.reward is not None:
        parts.append(f"reward {s.reward:.3f}")
    if s and s.eta_seconds and phase == "Running":
        parts.append(f"eta {_duration(s.eta_seconds)}")
    parts.append(f"elapsed {_duration(elapsed)}")
    return " ".join(parts)


class PlainProgress:
    """``client.wait``'s ``on_progress`` for a log: one flushed line per change, step-only changes rate-limited."""

    def __init__(self, echo=None, step_seconds: float | None = None, clock=time.monotonic):
        self.echo = echo or typer.echo
        self.step_seconds = step_seconds if step_seconds is not None else _progress_seconds()
        self.clock = clock
        self.started = clock()
        self.printed_at: float | None = None
        self.printed_key: tuple | None = None
        self.latest = None  # the newest job seen, printed or not

    def __call__(self, job) -> None:
        s = job.status
        key = (s.phase, s.stage, s.step, s.reward)
        if key == self.printed_key:
            return
        self.latest = job
        moved_on = self.printed_key is None or key is None or key[:2] != self.printed_key[:2]
        if moved_on or self.printed_at is None or self.clock() - self.printed_at >= self.step_seconds:
            self._print(job, key)

    def heartbeat(self, silent_for: float = 0.0) -> None:
        """Print the newest state (again, or for the first time if it was held back) unless a line was printed
        less than ``silent_for`` seconds ago."""
        if self.printed_at is not None and self.clock() - self.printed_at < silent_for:
            return
        if self.latest is not None:
            s = self.latest.status
            self._print(self.latest, (s.phase, s.stage, s.step, s.reward))

    def _print(self, job, key) -> None:
        self.echo(progress_line(job, self.clock() - self.started))
        sys.stdout.flush()
        self.printed_at, self.printed_key = self.clock(), key


@contextlib.contextmanager
def _sigterm_exits():
    """SIGTERM while the bar is drawn: exit 143 through the bar's cleanup, which shows the hidden cursor again."""
    import signal

    def stop(signum, frame):
        raise SystemExit(143)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_plain(client, name: str, timeout: float | None, until: frozenset[str]):
    """``client.wait`` printing ``PlainProgress`` lines, and the latest again at least every heartbeat."""
    from rarl.backends.base import wait_timeout
    from rarl.errors import WaitTimeout

    plain = PlainProgress()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return client.wait(name, until=until, timeout=PLAIN_HEARTBEAT_SECONDS if left is None else
                               min(PLAIN_HEARTBEAT_SECONDS, left), on_progress=plain, poll_interval=1.0)
        except WaitTimeout:
            if deadline is not None and time.monotonic() >= deadline:
                job = client.get(name)
                raise wait_timeout(name, job.status.phase, timeout, until) from None
            plain.heartbeat(silent_for=PLAIN_HEARTBEAT_SECONDS / 2)


def _wait_with_progress(client, name: str, timeout: float | None, quiet: bool = False,
                        until: frozenset[str] | None = None):
    """Wait with a live bar on a terminal, plain progress lines otherwise (a CI log, ``> out.log``), or silently."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rarl.api.vocabulary import TERMINAL_PHASES

    until = until or TERMINAL_PHASES
    if quiet:
        return client.wait(name, until=until, timeout=timeout, poll_interval=1.0)
    console = _console()
    if not console.is_terminal:
        return _wait_plain(client, name, timeout, until)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
    with _sigterm_exits(), Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("Pending", total=None, info="")

        def update(job) -> None:
            s = job.status
            total = s.total_steps or job.spec.total_steps()
            reward = f"reward {s.reward:.3f}" if s and s.reward is not None else ""
            eta = f"eta {s.eta_seconds:.0f}s" if s and s.eta_seconds else ""
            phase = s.phase or "Pending"
            stage = f" {s.stage}" if s and s.stage else ""
            bar.update(task, description=f"{phase}{stage}", total=total, completed=s.step or 0,
                       info="  ".join(x for x in (reward, eta) if x))

        return client.wait(name, until=until, timeout=timeout, on_progress=update, poll_interval=1.0)


@app.command()
def wait(
    name: str = typer.Argument(..., metavar="NAME", help="Job name."),
    timeout: float | None = typer.Option(None, "--timeout", metavar="SECONDS", min=0, help="Give up after this many seconds (exit 124; 0: look once)."),
    for_: str = typer.Option("Succeeded,Failed", "--for", metavar="PHASES", help="Comma-separated phases to wait for."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress while waiting (a bar on a terminal, "
                               "otherwise one line per step at most every 10 s)."),
    output: OutputFormat | None = output_option(),
) -> None:
    """Wait for a job to reach a phase (default: until it succeeds or fails; exit 1 if it failed).

    Exit 1 also when the job finished in a phase not asked for (--for Suspended on a Succeeded job).
    """
    from rarl.api.vocabulary import phase_set

    try:
        until = phase_set(for_, field="--for")
    except RARLError as exc:
        raise CLIError(str(exc)) from None
    client = make_client()
    fmt = output_format(output)
    if fmt is OutputFormat.table:
        job = _wait_with_progress(client, name, timeout, quiet=quiet, until=until)
        phase = job.status.phase or "Pending"
        typer.echo(f"rarljob/{name} {phase}" + (f": {_failure_text(job)}" if phase == "Failed" else ""))
    else:
        job = client.wait(name, until=until, timeout=timeout, poll_interval=1.0)
        _print_jobs([job], fmt, single=True)
    raise typer.Exit(_job_exit(job))


@app.command()
def suspend(name: str = typer.Argument(..., metavar="NAME", help="Job name.")) -> None:
    """Stop a job after a checkpoint (resume continues from it)."""
    refuse_output_option("suspend")
    make_client().suspend(name)
    typer.echo(f"rarljob/{name} suspending (the trainer checkpoints, then stops)")


@app.command()
def resume(name: str = typer.Argument(..., metavar="NAME", help="Job name.")) -> None:
    """Start a suspended job again from its newest checkpoint."""
    refuse_output_option("resume")
    make_client().resume(name)
    typer.echo(f"rarljob/{name} resumed")


@app.command()
def delete(name: str = typer.Argument(..., metavar="NAME", help="Job name.")) -> None:
    """Stop and remove a job (its checkpoints and exported model stay in storage)."""
    refuse_output_option("delete")
    make_client().delete(name)
    typer.echo(f"rarljob/{name} deleted")


def _fetch_dest(dest: str) -> Path:
    """``--dest`` checked before anything is fetched (the SDK's rule; an InvalidArgument exits 2)."""
    from rarl.client import fetch_destination

    return fetch_destination(dest, field="--dest")


class _FetchBar:
    """The download's progress bar: drawn only once the storage layer announces the total (``set_total``)."""

    def __init__(self, name: str):
        self.name = name
        self.bar = None
        self.task = None

    def set_total(self, total: int) -> None:
        if self.bar is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), console=_console())
            self.bar.start()
            self.task = self.bar.add_task(f"fetching {self.name}", total=total)
        else:
            self.bar.update(self.task, total=total)

    def __call__(self, delta: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, delta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def fetch(
    name: str = typer.Argument(..., metavar="NAME", help="Job name."),
    dest: str = typer.Option(..., "--dest", "-d", metavar="DIR", help="Folder to download the model into."),
) -> None:
    """Download a succeeded job's exported model and verify it against its manifest."""
    refuse_output_option("fetch")
    path = _fetch_dest(dest)
    client = make_client()
    job = client.get(name)
    if not job.status.model_uri:
        phase = job.status.phase or "Pending"
        raise no_export_error(name, phase)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"--dest {dest}: {exc.strerror or exc}") from None
    bar = _FetchBar(name)
    try:
        saved = client.fetch_model(name, path, progress=bar)
    finally:
        bar.close()
    typer.echo(f"model of rarljob/{name} verified and saved in {saved}")


@app.command()
def run(
    file: str = typer.Option(..., "-f", "--filename", metavar="FILE", help="RARLJob YAML file."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress while waiting (a bar on a terminal, "
                               "otherwise one line per step at most every 10 s)."),
) -> None:
    """Run a job here in the foreground (local backend) with a live progress bar; Ctrl-C suspends it.

    Without a terminal (a CI log, a file) the bar is one plain line per step instead.
    """
    from rarl.api.validation import parse_job
    from rarl.api.vocabulary import TERMINAL_PHASES
    from rarl.backends.local import absolutize

    refuse_output_option("run")
    if OPTIONS.backend is Backend.kubernetes:
        raise CLIError("--backend kubernetes: `rarlctl run` trains on this machine; use `rarlctl submit` for a cluster")
    job = parse_job(read_source(file), origin=file)
    client = make_client()
    existing = None
    try:
        existing = client.get(job.name)
    except Exception:
        existing = None
    phase = existing.status.phase if existing is not None and existing.status else None
    console = _console()
    if phase == "Suspended":
        typer.echo(f"resuming suspended rarljob/{job.name}")
        client.resume(job.name)
    else:
        earlier = _earlier_run(job)
        if (phase == "Succeeded" and earlier is not None and earlier.finished and earlier.changes is None
                and existing.spec.output.uri == absolutize(job, Path.cwd()).spec.output.uri):
            console.print(f"rarljob/{job.name} already Succeeded: nothing to do (model: {existing.status.model_uri}; "
                          "for a fresh run use a new job name or checkpoint.uri)")
            return
        say = _earlier_run_notice(job, earlier)
        if say:
            console.print(say)
        _submit(client, job)
    home = f" --home {OPTIONS.home}" if OPTIONS.home is not None else ""  # every printed command works as printed
    console.print(f"running rarljob/{job.name} locally: {len(job.spec.stages)} stages, "
                  f"{job.spec.total_steps()} steps; logs: rarlctl logs {job.name} -f{home}", markup=False)
    where = absolutize(job, Path.cwd()).spec  # relative locations are this folder's: said, so a run elsewhere is no surprise
    console.print(f"checkpoints: {where.checkpoint.uri}  model: {where.output.uri}", markup=False)
    started = time.time()
    try:
        # Suspended too: `rarlctl suspend` from another terminal (or runPolicy.suspend) ends this wait, not hangs it
        final = _wait_with_progress(client, job.name, None, quiet=quiet, until=TERMINAL_PHASES | {"Suspended"})
    except KeyboardInterrupt:
        console.print("interrupted: suspending after a checkpoint...")
        try:
            client.suspend(job.name)
        except JobFinished:
            pass  # it finished as Ctrl-C came: said below
        stopped = client.wait(job.name, until=TERMINAL_PHASES | {"Suspended"}, timeout=300, poll_interval=0.5)
        phase = stopped.status.phase
        if phase == "Suspended":
            console.print(f"suspended; continue with: rarlctl run -f {file}{home}  "
                          f"(or rarlctl resume {job.name}{home})", markup=False)
        else:
            console.print(f"rarljob/{job.name} {phase} before it could be suspended: "
                          + (_failure_text(stopped) if phase == "Failed" else f"model {stopped.status.model_uri}"),
                          markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    phase = final.status.phase if final.status else None
    if phase == "Suspended":
        console.print(f"rarljob/{job.name} was suspended; continue with: rarlctl run -f {file}{home}  "
                      f"(or rarlctl resume {job.name}{home})", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED)
    if phase != "Succeeded":
        console.print(f"[red]rarljob/{job.name} {phase}[/red]: {_failure_text(final)}")
        for line in list(client.logs(job.name))[-10:]:
            console.print(f"  {line}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    run_dir = client.backend.run_dir(job.name)
    console.print(f"[green]rarljob/{job.name} Succeeded[/green] in {time.time() - started:.0f} s")
    _print_reward_trend(console, run_dir)
    _print_before_after(console, run_dir)
    console.print(f"model:   {final.status.model_uri}")
    report = _find(run_dir, final.status.model_uri, "REPORT.md")
    if report:
        console.print(f"report:  {report}")
    console.print(f"run dir: {run_dir}")


def _find(run_dir: Path, model_uri: str | None, name: str) -> Path | None:
    from rarl.api.uri import has_scheme

    for folder in (Path(model_uri) if model_uri and not has_scheme(model_uri) else None, run_dir):
        if folder is not None and (folder / name).exists():
            return folder / name
    return None


def reward_trend(history: list[dict], window: int = 10) -> list[tuple[str, float, float]]:
    """Per stage: mean training reward (before RMO) of its first and last ``window`` steps."""
    by_stage: dict[str, list[float]] = {}
    for row in history:
        value = row.get("rarl/reward_before_rmo", row.get("reward"))
        if isinstance(value, (int, float)) and row.get("stage"):
            by_stage.setdefault(row["stage"], []).append(float(value))
    out = []
    for stage, values in by_stage.items():
        w = max(1, min(window, len(values) // 2))
        out.append((stage, sum(values[:w]) / w, sum(values[-w:]) / w))
    return out


def _print_reward_trend(console, run_dir: Path) -> None:
    try:
        history = json.loads((run_dir / "export" / "history.json").read_text())
    except (OSError, ValueError):
        return
    for stage, first, last in reward_trend(history):
        console.print(f"training reward ({stage}, before RMO): first steps {first:.3f} -> last steps {last:.3f}")


def _print_before_after(console, run_dir: Path) -> None:
    """The metrics before training and after each stage, side by side, from the trainer's metrics.json.

    One column per stage end (not only before vs after the whole job), so what each stage added
    shows: an RL stage after an SFT cold start is judged against the SFT column.
    """
    from rich.table import Table

    from rarl.api.reports import read_run_metrics

    metrics = read_run_metrics(run_dir / "metrics.json")
    if metrics is None:
        return
    columns = [("BEFORE", metrics.baseline or {})]
    columns += [(f"AFTER {name}", m.end) for name, m in metrics.stages.items() if m.end]
    if len(columns) == 1 and metrics.final:
        columns.append(("AFTER", metrics.final))
    keys = [k for k in sorted({k for _, m in columns for k in m}) if not k.endswith("/count")]
    if not keys:
        return
    table = Table(title="Evaluation before training and after each stage", box=None, header_style="bold",
                  title_justify="left")
    table.add_column("METRIC", justify="left")
    for label, _ in columns:
        table.add_column(label, justify="right")

    def fmt(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, (int, float)) else "-"

    for key in keys:
        table.add_row(key, *(fmt(m.get(key)) for _, m in columns))
    console.print(table)
