"""``rarlctl validate``, ``crd`` and ``init``: the verbs that work on RARLJob files, no backend needed."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rarl.cli.app import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    OPTIONS,
    Backend,
    CLIError,
    OutputFormat,
    app,
    output_format,
    output_option,
    read_source,
    refuse_output_option,
)


def _is_local_path(value: str) -> bool:
    """A plain path or file:// URI (not s3://, not builtin:)."""
    from rarl.api.uri import builtin_name, has_scheme

    return builtin_name(value) is None and (not has_scheme(value) or value.startswith("file://"))


def _local_warnings(job) -> list[str]:
    """What ``run``/``submit`` on this machine would refuse or miss, said by ``validate`` (local backend only)."""
    if OPTIONS.backend is Backend.kubernetes:
        return _missing_paths(job)
    from rarl.backends.local import node_problem

    refused = node_problem(job)
    warnings = [f"{refused}; `rarlctl run` and `submit` refuse it here"] if refused else []
    ttl = job.spec.run_policy.ttl_seconds_after_finished
    if ttl is not None:  # the operator deletes a finished RARLJob; a local job folder holds its record
        warnings.append(f"spec.runPolicy.ttlSecondsAfterFinished: {ttl} is the operator's; the local backend keeps "
                        "a finished job until `rarlctl delete`")
    return warnings + _missing_paths(job)


def _missing_paths(job) -> list[str]:
    """Warnings for local locations that do not exist here.

    Relative ones are read from the current directory, as ``submit`` and ``run`` resolve them (a local
    job's relative locations are relative to where it is submitted from).

    They may exist where the job runs, so they are warnings, not problems. ``model.base`` counts as a path
    only when it names one explicitly (``.``, ``/``, ``~`` or file://), as the trainer reads it; else it is a hub id.
    """
    from rarl.api.uri import local_path, names_a_path

    spec = job.spec
    candidates = [(f"spec.dataset.{field}", getattr(spec.dataset, field)) for field in ("train", "eval", "images")]
    base = spec.model.base
    if names_a_path(base):
        candidates.append(("spec.model.base", base))
    warnings = []
    for path, value in candidates:
        if not value or not _is_local_path(value):
            continue
        if not local_path(value).exists():
            warnings.append(f"{path}: {value} does not exist here (it must exist where the job runs)")
    return warnings


@app.command()
def validate(
    files: list[str] = typer.Option(..., "-f", "--filename", metavar="FILE",
                              help="RARLJob YAML file; repeatable; '-' reads stdin."),
    output: OutputFormat | None = output_option(),
) -> None:
    """Check RARLJob files: one OK line per valid document, one line per problem otherwise.

    With --backend kubernetes also what a cluster needs (checkpoints and the model outside the pods).
    """
    from rarl.api.validation import cluster_problems, load_yaml_documents, validate_document

    results = []
    worst = EXIT_OK
    for name in files:
        label = "<stdin>" if name == "-" else name
        try:
            data = read_source(name, named=False)
        except CLIError as exc:
            results.append({"file": label, "document": None, "name": None, "valid": False, "problems": [str(exc)],
                            "warnings": []})
            worst = EXIT_USAGE
            continue
        docs, problems = load_yaml_documents(data)
        if problems:
            results.append({"file": label, "document": None, "name": None, "valid": False,
                            "problems": [str(p) for p in problems], "warnings": []})
            worst = max(worst, EXIT_INVALID)
            continue
        for index, doc in enumerate(docs, start=1):
            job, problems = validate_document(doc)
            if job is not None and OPTIONS.backend is Backend.kubernetes and (problems := cluster_problems(job)):
                job = None
            name_ = job.name if job else (doc.get("metadata") or {}).get("name") if isinstance(doc, dict) else None
            results.append({"file": label, "document": index if len(docs) > 1 else None,
                            "name": name_ if isinstance(name_, str) else None,
                            "valid": job is not None, "problems": [str(p) for p in problems],
                            "warnings": _local_warnings(job) if job is not None else []})
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
            for warning in r["warnings"]:
                typer.echo(f"{where}: warning: {warning}")
    raise typer.Exit(worst)


@app.command()
def crd(
    reference: bool = typer.Option(False, "--reference", help="Print the Markdown field reference instead."),
) -> None:
    """Print the RARLJob CustomResourceDefinition (generated from the API types): YAML, or JSON with -o json."""
    if reference:
        if OPTIONS.output_given:
            raise CLIError("-o/--output: the --reference is Markdown; drop -o")
        from rarl.api.docs import reference_markdown

        typer.echo(reference_markdown(), nl=False)
        return
    if OPTIONS.output is OutputFormat.json:
        from rarl.api.crd import build_crd

        typer.echo(json.dumps(build_crd(), indent=2))
        return
    from rarl.api.crd import crd_yaml

    typer.echo(crd_yaml(), nl=False)


@app.command()
def init(
    example: str = typer.Option("quickstart", "--example", "-e", metavar="NAME", help="Which example to write (see --list)."),
    file: Path | None = typer.Option(None, "--file", "-f", metavar="FILE", help="Write to this file instead of stdout."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    list_: bool = typer.Option(False, "--list", help="List the examples and exit."),
) -> None:
    """Write a commented example RARLJob to start from."""
    from rarl.examples import example_names, example_text

    refuse_output_option("init")  # the example is commented YAML, in one format

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
