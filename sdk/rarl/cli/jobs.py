"""The job verbs of ``rarlctl``: submit, get, list, describe, logs, wait, suspend, resume, delete, fetch, run.

Each verb parses its options, calls ``rarl.Client`` and hands what it got to ``rarl.cli.render``, which
prints it; what is printed depends on ``-o`` (table for people, json/yaml for machines).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from rarl.cli import render
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
    output_format,
    output_option,
    read_source,
    refuse_output_option,
)
from rarl.errors import InvalidSpec, JobFinished, RARLError, exported_model_uri


def _read_job(file: str):
    """The RARLJob of a file ('-': stdin), validated: the one validation the verb does (it hands the typed job on)."""
    from rarl.api.validation import parse_job

    return parse_job(read_source(file), origin="<stdin>" if file == "-" else file)


def _job_exit(job) -> int:
    return EXIT_INVALID if job.status.phase == "Failed" else EXIT_OK


def _home_flag() -> str:
    """``--home DIR`` when one was given: every command a verb prints works as printed."""
    return f" --home {OPTIONS.home}" if OPTIONS.home is not None else ""


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
    job = _read_job(file)
    fmt = output_format(output)
    if dry_run:  # the Kubernetes manifests, whichever the backend: what a cluster needs is checked too
        render.print_manifests(_manifests(job), fmt)
        return
    client = make_client()
    say = _earlier_run_notice(job, _earlier_run(job)) if client.backend.name == "local" else None
    job = _submit(client, job)
    if fmt is OutputFormat.table:
        typer.echo(f"rarljob/{job.name} submitted ({client.backend.name} backend)")
        if say:
            typer.echo(say)
    else:
        render.print_jobs([job], fmt, single=True)
    if wait:
        job = _wait_with_progress(client, job.name, timeout, quiet=quiet)
        raise typer.Exit(_job_exit(job))


def _manifests(job) -> list[dict]:
    """The job and every object the operator would create for it (refused when a cluster could not run it)."""
    from rarl.api.validation import cluster_problems
    from rarl.manifests import Defaults, all_children

    if problems := cluster_problems(job):
        raise InvalidSpec(problems)
    return [job.to_dict(include_status=False),
            *all_children(job, uid="<uid>", attempt=0, restarts=0, defaults=Defaults())]


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


@app.command()
def get(name: str = typer.Argument(..., metavar="NAME", help="Job name."), output: OutputFormat | None = output_option()) -> None:
    """Show one job: phase, stage, step, reward."""
    render.print_jobs([make_client().get(name)], output_format(output, wide=True), single=True)


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
    render.print_jobs(jobs, fmt)
    if watch:
        _watch(client, labels or None, fmt, jobs, interval)


def _watch(client, labels: dict[str, str] | None, fmt: OutputFormat, jobs: list, interval: float) -> None:
    """kubectl get -w: one line (table row, or a JSON/YAML document) per job whose state changed."""
    wide = fmt is OutputFormat.wide
    seen = {job.name: render.watch_key(job, wide) for job in jobs}
    while True:
        time.sleep(interval)
        for job in client.list(labels=labels):
            if seen.get(job.name) != render.watch_key(job, wide):
                seen[job.name] = render.watch_key(job, wide)
                render.print_watched(job, fmt)


@app.command()
def describe(name: str = typer.Argument(..., metavar="NAME", help="Job name."), output: OutputFormat | None = output_option()) -> None:
    """Everything about a job: progress, conditions, metrics, checkpoints and events."""
    client = make_client()
    job = client.get(name)
    events = client.events(name)
    checkpoints = _checkpoints(job)
    fmt = output_format(output)
    if fmt is OutputFormat.table:
        render.print_describe(job, client.backend.name, events, checkpoints)
    else:
        doc = {"job": job.to_dict(), "events": [e.to_dict() for e in events], "checkpoints": checkpoints}
        render.print_document(doc, fmt, default=str)


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


def _wait_plain(client, name: str, timeout: float | None, until: frozenset[str]):
    """``client.wait`` printing ``PlainProgress`` lines, and the latest again at least every heartbeat."""
    from rarl.backends.base import wait_timeout
    from rarl.errors import WaitTimeout

    heartbeat = render.PLAIN_HEARTBEAT_SECONDS
    plain = render.PlainProgress()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return client.wait(name, until=until, timeout=heartbeat if left is None else min(heartbeat, left),
                               on_progress=plain, poll_interval=1.0)
        except WaitTimeout:
            if deadline is not None and time.monotonic() >= deadline:
                job = client.get(name)
                raise wait_timeout(name, job.status.phase, timeout, until) from None
            plain.heartbeat(silent_for=heartbeat / 2)


def _wait_with_progress(client, name: str, timeout: float | None, quiet: bool = False,
                        until: frozenset[str] | None = None):
    """Wait with a live bar on a terminal, plain progress lines otherwise (a CI log, ``> out.log``), or silently."""
    from rarl.api.vocabulary import TERMINAL_PHASES

    until = until or TERMINAL_PHASES
    if quiet:
        return client.wait(name, until=until, timeout=timeout, poll_interval=1.0)
    console = render.console()
    if not console.is_terminal:
        return _wait_plain(client, name, timeout, until)
    with render.progress_bar(console) as update:
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
        typer.echo(render.wait_outcome(name, job))
    else:
        job = client.wait(name, until=until, timeout=timeout, poll_interval=1.0)
        render.print_jobs([job], fmt, single=True)
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


@app.command()
def fetch(
    name: str = typer.Argument(..., metavar="NAME", help="Job name."),
    dest: str = typer.Option(..., "--dest", "-d", metavar="DIR", help="Folder to download the model into."),
) -> None:
    """Download a succeeded job's exported model and verify it against its manifest."""
    refuse_output_option("fetch")
    path = _fetch_dest(dest)
    client = make_client()
    exported_model_uri(client.get(name))  # ModelNotExported: exit 1, before --dest is made
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"--dest {dest}: {exc.strerror or exc}") from None
    bar = render.FetchBar(name)
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
    from rarl.backends.local import absolutize

    refuse_output_option("run")
    if OPTIONS.backend is Backend.kubernetes:
        raise CLIError("--backend kubernetes: `rarlctl run` trains on this machine; use `rarlctl submit` for a cluster")
    job = _read_job(file)
    here = absolutize(job, Path.cwd())  # relative locations are this folder's, as the local backend reads them
    client = make_client()
    console = render.console()
    if not _start(client, job, here, console):
        return
    home = _home_flag()
    render.run_started(console, job, here.spec, home)  # said, so a run elsewhere is no surprise
    started = time.time()
    final = _follow(client, job.name, file, home, quiet, console)
    _conclude(client, final, file, home, console, started)


def _start(client, job, here, console) -> bool:
    """Resume the job when it is suspended, else submit it (saying what it does with an earlier run's checkpoint).

    ``here``: the job with its locations made absolute. False: the same job already succeeded with these
    settings and this output, so there is nothing to do.
    """
    from rarl.resume import earlier_run

    try:
        existing = client.get(job.name)
    except Exception:
        existing = None
    phase = existing.status.phase if existing is not None else None
    if phase == "Suspended":
        typer.echo(f"resuming suspended rarljob/{job.name}")
        client.resume(job.name)
        return True
    earlier = earlier_run(here)
    if (phase == "Succeeded" and earlier is not None and earlier.finished and earlier.changes is None
            and existing.spec.output.uri == here.spec.output.uri):
        render.run_already_succeeded(console, job, existing.status.model_uri)
        return False
    say = _earlier_run_notice(job, earlier)
    if say:
        console.print(say)
    _submit(client, job)
    return True


def _follow(client, name: str, file: str, home: str, quiet: bool, console):
    """Wait with progress until the job ends or is suspended (``rarlctl suspend`` from another terminal, or
    runPolicy.suspend: that ends this wait, not hangs it). Ctrl-C suspends it after a checkpoint and exits 130."""
    from rarl.api.vocabulary import TERMINAL_PHASES

    until = TERMINAL_PHASES | {"Suspended"}
    try:
        return _wait_with_progress(client, name, None, quiet=quiet, until=until)
    except KeyboardInterrupt:
        console.print("interrupted: suspending after a checkpoint...")
        try:
            client.suspend(name)
        except JobFinished:
            pass  # it finished as Ctrl-C came: said below
        stopped = client.wait(name, until=until, timeout=300, poll_interval=0.5)
        render.run_interrupted(console, stopped, file, home)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _conclude(client, final, file: str, home: str, console, started: float) -> None:
    """Suspended (exit 130), failed with the log's last lines (exit 1), or succeeded with the run's summary."""
    phase = final.status.phase if final.status else None
    if phase == "Suspended":
        render.run_suspended(console, final, file, home)
        raise typer.Exit(EXIT_INTERRUPTED)
    if phase != "Succeeded":
        render.run_failed(console, final, phase, list(client.logs(final.name))[-10:])
        raise typer.Exit(EXIT_INVALID)
    run_dir = client.backend.run_dir(final.name)
    render.run_succeeded(console, final, run_dir, time.time() - started)
