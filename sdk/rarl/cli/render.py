"""What the job verbs of ``rarlctl`` print: job tables, ``describe``, progress bars and plain progress lines,
the messages and summary of ``run``.

Rendering only: each function takes typed objects (``RARLJob``, ``JobEvent``, a run folder) and prints or
returns text; nothing here calls a backend (the verbs in ``rarl.cli.jobs`` do). rich and yaml are imported
inside the functions, so ``rarlctl --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rarl.api.vocabulary import CONDITION_FAILED
from rarl.cli.app import CLIError, OutputFormat

if TYPE_CHECKING:
    from rich.console import Console

    from rarl.api.types import RARLJob, RARLJobSpec
    from rarl.backends.base import JobEvent


def console(width: int | None = None) -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, width=width)


def age(timestamp: str | None) -> str:
    """How long ago ``timestamp`` (RFC 3339) was, as kubectl's AGE: ``5s``, ``3m``, ``2h``, ``4d``."""
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


def duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


# --------------------------------------------------------------------------- job tables and documents

COLUMNS = ("NAME", "PHASE", "STAGE", "STEP", "REWARD", "RESTARTS", "AGE")
WIDE_COLUMNS = (*COLUMNS, "ATTEMPT", "ETA", "BASE MODEL", "LATEST CHECKPOINT", "MODEL URI")


def job_row(job: RARLJob, wide: bool = False) -> list[str]:
    s = job.status
    created = (job.metadata.model_extra or {}).get("creationTimestamp") or s.start_time
    step = f"{s.step or 0}/{s.total_steps or job.spec.total_steps()}"
    reward = f"{s.reward:.3f}" if s.reward is not None else "-"
    row = [job.name, s.phase or "Pending", s.stage or "-", step, reward, str(s.restarts), age(created)]
    if wide:
        eta = f"{s.eta_seconds:.0f}s" if s.eta_seconds is not None and s.phase == "Running" else "-"
        row += [str(s.attempt), eta, job.spec.model.base, s.latest_checkpoint or "-", s.model_uri or "-"]
    return row


def watch_key(job: RARLJob, wide: bool) -> list[str]:
    """A job's row without AGE (which changes on every poll): ``list --watch`` prints a row when this changes."""
    row = job_row(job, wide)
    return row[:6] + row[7:]


def is_table(fmt: OutputFormat) -> bool:
    return fmt in (OutputFormat.table, OutputFormat.wide)


def print_document(doc: Any, fmt: OutputFormat, default: Callable[[Any], Any] | None = None) -> None:
    """One document as JSON (indented) or YAML (keys in their order)."""
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(doc, indent=2, default=default))
    else:
        import yaml

        typer.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)


def print_jobs(jobs: list[RARLJob], fmt: OutputFormat, single: bool = False) -> None:
    """Jobs as a table (``wide``: more columns, never cut to the terminal) or as documents."""
    if is_table(fmt):
        from rich.table import Table

        wide = fmt is OutputFormat.wide
        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in WIDE_COLUMNS if wide else COLUMNS:
            table.add_column(col, no_wrap=wide)
        for job in jobs:
            table.add_row(*job_row(job, wide))
        if jobs:  # a wide table is never cut to the terminal (kubectl's -o wide is not either)
            console(width=100_000 if wide else None).print(table)
        else:
            typer.echo("No jobs found.", err=True)
        return
    docs: Any = [j.to_dict() for j in jobs]
    # one job is its document; several are a v1 List, as kubectl prints them (and as submit --dry-run does)
    print_document(docs[0] if single else {"apiVersion": "v1", "kind": "List", "items": docs}, fmt)


def print_watched(job: RARLJob, fmt: OutputFormat) -> None:
    """A job that changed during ``list --watch``: its row (as kubectl get -w), or its document."""
    if is_table(fmt):
        typer.echo("  ".join(job_row(job, fmt is OutputFormat.wide)))
    else:
        print_jobs([job], fmt, single=True)


def print_manifests(docs: list[dict], fmt: OutputFormat) -> None:
    """``submit --dry-run``: a v1 List in JSON, else one YAML document each."""
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}, indent=2))
        return
    import yaml

    typer.echo(yaml.safe_dump_all(docs, sort_keys=False), nl=False)


def failure_text(job: RARLJob) -> str:
    """Why a job failed: its Failed condition's reason and message."""
    for c in reversed(job.status.conditions):  # every failure sets Failed; its reason says which kind
        if c.status == "True" and c.type == CONDITION_FAILED:
            return c.message or "" if c.reason in (None, c.type) else f"{c.reason}: {c.message}"
    return "job failed"


def wait_outcome(name: str, job: RARLJob) -> str:
    """``wait``'s last line: the phase reached (and why it failed)."""
    phase = job.status.phase or "Pending"
    return f"rarljob/{name} {phase}" + (f": {failure_text(job)}" if phase == "Failed" else "")


# --------------------------------------------------------------------------- describe


def _titled_table(title: str, columns: Iterable[str]):
    from rich.table import Table

    table = Table(title=title, box=None, header_style="bold", title_justify="left")
    for col in columns:
        table.add_column(col)
    return table


def print_describe(job: RARLJob, backend: str, events: list[JobEvent], checkpoints: list[dict]) -> None:
    """``describe``: the job's fields, then its conditions, metrics, checkpoints and events as tables."""
    from rich.table import Table

    out = console()
    s = job.status
    total = s.total_steps or job.spec.total_steps()
    lines = [
        ("Name", job.name), ("Namespace", job.metadata.namespace or "-"), ("Backend", backend),
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
        out.print(f"[bold]{key + ':':<{width + 1}}[/bold] {value}")
    if s and s.conditions:
        table = _titled_table("Conditions", ("TYPE", "STATUS", "REASON", "MESSAGE", "SINCE"))
        for c in s.conditions:
            table.add_row(c.type, c.status, c.reason or "", c.message or "", age(c.last_transition_time))
        out.print(table)
    if s and s.metrics:
        table = Table(title="Metrics", box=None, header_style="bold", title_justify="left")
        table.add_column("METRIC")
        table.add_column("VALUE", justify="right")
        for key in sorted(s.metrics):
            table.add_row(key, f"{s.metrics[key]:.4f}")
        out.print(table)
    if checkpoints:
        table = _titled_table("Checkpoints", ("STEP", "STAGE", "URI"))
        for c in checkpoints:
            table.add_row(str(c["step"]), c["stage"] or "-", c["uri"])
        out.print(table)
    if events:
        table = _titled_table("Events", ("TYPE", "REASON", "AGE", "MESSAGE"))
        for e in events:
            table.add_row(e.type, e.reason, age(e.time), e.message)
        out.print(table)


# --------------------------------------------------------------------------- progress while waiting

PLAIN_STEP_SECONDS = 10.0
"""Without a terminal: at most one line per this many seconds while only the step moves (phase and stage changes
always print); the environment variable ``RARL_PROGRESS_SECONDS`` sets another (0: every step)."""
PLAIN_HEARTBEAT_SECONDS = 60.0
"""Without a terminal: the latest line again after this many seconds without a change (an evaluation, a restart), so
a CI runner that stops silent jobs sees the job alive."""


def progress_seconds() -> float:
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


def progress_line(job: RARLJob, elapsed: float) -> str:
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
        parts.append(f"eta {duration(s.eta_seconds)}")
    parts.append(f"elapsed {duration(elapsed)}")
    return " ".join(parts)


class PlainProgress:
    """``client.wait``'s ``on_progress`` for a log: one flushed line per change, step-only changes rate-limited."""

    def __init__(self, echo=None, step_seconds: float | None = None, clock=time.monotonic):
        self.echo = echo or typer.echo
        self.step_seconds = step_seconds if step_seconds is not None else progress_seconds()
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
def sigterm_exits() -> Iterator[None]:
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


@contextlib.contextmanager
def progress_bar(out: Console) -> Iterator[Callable[[RARLJob], None]]:
    """A live bar on a terminal; yields the ``on_progress(job)`` that moves it (SIGTERM exits cleanly)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
    with sigterm_exits(), Progress(*columns, console=out, transient=False) as bar:
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

        yield update


class FetchBar:
    """The download's progress bar: drawn only once the storage layer announces the total (``set_total``)."""

    def __init__(self, name: str):
        self.name = name
        self.bar = None
        self.task = None

    def set_total(self, total: int) -> None:
        if self.bar is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), console=console())
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


# --------------------------------------------------------------------------- rarlctl run


def run_already_succeeded(out: Console, job: RARLJob, model_uri: str | None) -> None:
    out.print(f"rarljob/{job.name} already Succeeded: nothing to do (model: {model_uri}; "
              "for a fresh run use a new job name or checkpoint.uri)")


def run_started(out: Console, job: RARLJob, where: RARLJobSpec, home: str) -> None:
    """What runs, where its log is, and where its checkpoints and model go (``where``: the absolute locations)."""
    out.print(f"running rarljob/{job.name} locally: {len(job.spec.stages)} stages, "
              f"{job.spec.total_steps()} steps; logs: rarlctl logs {job.name} -f{home}", markup=False)
    out.print(f"checkpoints: {where.checkpoint.uri}  model: {where.output.uri}", markup=False)


def continue_hint(name: str, file: str, home: str) -> str:
    return f"continue with: rarlctl run -f {file}{home}  (or rarlctl resume {name}{home})"


def run_interrupted(out: Console, stopped: RARLJob, file: str, home: str) -> None:
    """After Ctrl-C: suspended (and how to go on), or the phase the job reached before it could be."""
    phase = stopped.status.phase
    if phase == "Suspended":
        out.print(f"suspended; {continue_hint(stopped.name, file, home)}", markup=False)
    else:
        out.print(f"rarljob/{stopped.name} {phase} before it could be suspended: "
                  + (failure_text(stopped) if phase == "Failed" else f"model {stopped.status.model_uri}"),
                  markup=False)


def run_suspended(out: Console, job: RARLJob, file: str, home: str) -> None:
    out.print(f"rarljob/{job.name} was suspended; {continue_hint(job.name, file, home)}", markup=False)


def run_failed(out: Console, final: RARLJob, phase: str | None, log_lines: Iterable[str]) -> None:
    out.print(f"[red]rarljob/{final.name} {phase}[/red]: {failure_text(final)}")
    for line in log_lines:
        out.print(f"  {line}", markup=False)


def run_succeeded(out: Console, final: RARLJob, run_dir: Path, seconds: float) -> None:
    """The summary: time taken, reward trend, evaluation before/after, where the model and report are."""
    out.print(f"[green]rarljob/{final.name} Succeeded[/green] in {seconds:.0f} s")
    print_reward_trend(out, run_dir)
    print_before_after(out, run_dir)
    out.print(f"model:   {final.status.model_uri}")
    report = find(run_dir, final.status.model_uri, "REPORT.md")
    if report:
        out.print(f"report:  {report}")
    out.print(f"run dir: {run_dir}")


def find(run_dir: Path, model_uri: str | None, name: str) -> Path | None:
    """``name`` in the exported model's folder (a local one), else in the run folder."""
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


def print_reward_trend(out: Console, run_dir: Path) -> None:
    try:
        history = json.loads((run_dir / "export" / "history.json").read_text())
    except (OSError, ValueError):
        return
    for stage, first, last in reward_trend(history):
        out.print(f"training reward ({stage}, before RMO): first steps {first:.3f} -> last steps {last:.3f}")


def print_before_after(out: Console, run_dir: Path) -> None:
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
    out.print(table)
