"""Turn YAML text or dicts into RARLJobs, or into field problems a person can act on.

Never raises on bad input: every problem is a ``Problem(path, message)`` whose
path is written the way the YAML is (``spec.stages[1].rmo.probability``).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rarl.api.types import GROUP_VERSION, KIND, RARLJob
from rarl.api.uri import REDACTED, redact_uri, redact_uris, secret_name
from rarl.errors import InvalidSpec, Problem

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024

# Keys that hold secret values; in a RARLJob they must live in a Secret, referenced by name.
SECRET_KEYS = {
    "accesskey", "accesskeyid", "awsaccesskeyid", "secretkey", "secretaccesskey", "awssecretaccesskey",
    "sessiontoken", "awssessiontoken", "password", "token", "apikey", "secret", "credentials", "hftoken",
}
_SECRET_ADVICE = ("never put secrets in a RARLJob: store them in a Kubernetes Secret and reference it with "
                  "spec.storage.credentialsSecret.name")
_FREE_FORM_SECRET_ADVICE = (
    "looks like a secret value by its key; never put secrets in a RARLJob (its labels, annotations and maps are "
    "copied to the ConfigMap, Job and pods): store it in a Kubernetes Secret and reference the Secret by name with "
    "spec.logging.credentialsSecret (its keys become the trainer's environment variables, e.g. WANDB_API_KEY) or "
    "spec.storage.credentialsSecret.name (S3 credentials)"
)
_NOT_A_SECRET = {"", "true", "false"}
"""Values no secret can be (``vault.hashicorp.com/agent-inject-token: "true"`` switches a feature on)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (PyYAML would silently keep the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_documents(data: bytes | str) -> tuple[list[Any], list[Problem]]:
    """Parse (multi-document) YAML; empty documents are dropped. Problems instead of exceptions."""
    if isinstance(data, bytes):
        if len(data) > MAX_DOCUMENT_BYTES:
            return [], [Problem("", f"file is {len(data)} bytes; a RARLJob file may be at most {MAX_DOCUMENT_BYTES}")]
        if b"\x00" in data:
            return [], [Problem("", "file is binary, not YAML text")]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [], [Problem("", f"file is not UTF-8 text (byte {exc.start})")]
    else:
        text = data
        if len(text) > MAX_DOCUMENT_BYTES:
            return [], [Problem("", f"text is {len(text)} characters; at most {MAX_DOCUMENT_BYTES}")]
    try:
        docs = [d for d in yaml.load_all(text, Loader=_UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return [], [Problem("", f"not valid YAML{where}: {what}")]
    except RecursionError:
        return [], [Problem("", "YAML is nested too deeply")]
    if not docs:
        return [], [Problem("", "file is empty: expected a RARLJob document")]
    return docs, []


def format_path(loc: tuple[Any, ...]) -> str:
    """('spec', 'stages', 1, 'rmo', 'probability') -> 'spec.stages[1].rmo.probability'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated/list/dict for walking error locations."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _unwrap(a)]
    return [annotation]


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that the location (of an unknown field) points into."""
    current: Any = RARLJob
    for part in loc:
        candidates = _unwrap(current)
        nxt = None
        for cand in candidates:
            origin = typing.get_origin(cand)
            if isinstance(part, int) and origin in (list, tuple):
                nxt = typing.get_args(cand)[0]
            elif isinstance(part, str) and origin is dict:
                nxt = typing.get_args(cand)[1]
            elif isinstance(part, str) and isinstance(cand, type) and issubclass(cand, BaseModel):
                for name, info in cand.model_fields.items():
                    if part in (name, info.alias):
                        nxt = info.annotation
                        break
            if nxt is not None:
                break
        if nxt is None:
            return None
        current = nxt
    for cand in _unwrap(current):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def _known_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _error_location(err: Any) -> tuple[Any, ...]:
    """Where the problem is: a model-level rule about one list item names that item's field."""
    loc = tuple(err["loc"])
    if err["type"] == "duplicate_stage_name":
        return (*loc, "stages", err["ctx"]["index"], "name")
    if err["type"] == "field_rule":
        return (*loc, *err["ctx"]["field"].split("."))
    return loc


def _describe_error(err: dict[str, Any]) -> str:
    kind = err["type"]
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        loc = err["loc"]
        model = _model_at(tuple(loc[:-1]))
        field = str(loc[-1])
        if model is not None:
            names = _known_names(model)
            close = difflib.get_close_matches(field, names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown field{hint} (known: {', '.join(names)})"
        return "unknown field"
    value = err.get("input")
    short = isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) <= 60)
    if short and kind not in ("value_error", "assertion_error"):
        return f"{msg} (got {value!r})"
    return msg


def _free_form_maps(node: Any, annotation: Any, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], dict]]:
    """The maps whose keys the user picks (labels, annotations, nodeSelector, extra resources), with their location.

    Found by walking the document along the RARLJob model, so a map field added later is scanned without a list here.
    """
    for cand in _unwrap(annotation):
        origin = typing.get_origin(cand)
        if origin is dict and isinstance(node, dict):
            yield loc, node
            return
        if origin in (list, tuple) and isinstance(node, list):
            for i, item in enumerate(node):
                yield from _free_form_maps(item, typing.get_args(cand)[0], (*loc, i))
            return
        if isinstance(cand, type) and issubclass(cand, BaseModel) and isinstance(node, dict):
            fields = {alias: info.annotation for name, info in cand.model_fields.items()
                      for alias in (name, info.alias) if alias}
            for key, value in node.items():
                if key in fields:
                    yield from _free_form_maps(value, fields[key], (*loc, key))
            return


def _secret_problems(node: Any, loc: tuple[Any, ...], free_form: set[tuple[Any, ...]]) -> list[tuple[Problem, Any]]:
    """Secret values written inline anywhere in the document, with each value (to keep it out of other messages).

    Spec fields match by their exact name; the keys of free-form maps (``free_form``) by their ending, since a
    user names them freely (``wandb.ai/api-key``, ``example.com/aws_secret_access_key``).
    """
    found: list[tuple[Problem, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if loc in free_form:
                if secret_name(key) and not (value is None or str(value).strip().lower() in _NOT_A_SECRET):
                    found.append((Problem(format_path((*loc, key)), _FREE_FORM_SECRET_ADVICE), value))
                continue
            norm = str(key).replace("_", "").replace("-", "").lower()
            if norm in SECRET_KEYS and not isinstance(value, dict):
                found.append((Problem(format_path((*loc, key)), f"looks like a secret value; {_SECRET_ADVICE}"), value))
            else:
                found.extend(_secret_problems(value, (*loc, key), free_form))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_secret_problems(value, (*loc, i), free_form))
    return found


def _secret_scan(doc: dict[str, Any]) -> tuple[list[Problem], list[str]]:
    """The secret problems of a document (a dict or a typed job's dump) and the secret values they name."""
    user_written = {k: doc[k] for k in ("metadata", "spec") if k in doc}  # status is observed, not written
    free_form = {loc for loc, _ in _free_form_maps(user_written, RARLJob, ())}
    hits = _secret_problems(doc, (), free_form)
    values = [str(v) for _, v in hits if isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v)]
    return [p for p, _ in hits], values


def _clean(problems: list[Problem], secret_values: list[str]) -> list[Problem]:
    """Problems fit to show: URIs redacted (userinfo, signed query parameters), no secret value the scan found."""
    out = []
    for p in problems:
        message = redact_uris(p.message)
        for value in secret_values:
            message = message.replace(repr(value), repr(REDACTED))
            if len(value) >= 4:
                message = message.replace(value, REDACTED)
        out.append(Problem(p.path, message))
    return out


def validate_document(doc: Any) -> tuple[RARLJob | None, list[Problem]]:
    """Validate one parsed document; returns the job or the list of problems (never raises)."""
    if not isinstance(doc, dict):
        return None, [Problem("", f"expected a mapping (a RARLJob document), got {type(doc).__name__}")]
    problems: list[Problem] = []
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version != GROUP_VERSION:
        problems.append(Problem("apiVersion", f"must be {GROUP_VERSION!r} (got {api_version!r})"))
    if kind != KIND:
        problems.append(Problem("kind", f"must be {KIND!r} (got {kind!r})"))
    if problems:
        return None, _clean(problems, [])
    try:
        secrets, secret_values = _secret_scan(doc)
    except RecursionError:
        return None, [Problem("", "cannot validate: the document is nested too deeply")]
    secret_paths = {p.path for p in secrets}
    try:
        job = RARLJob.model_validate(doc)
    except ValidationError as exc:
        problems = list(secrets)
        for err in exc.errors():
            path = format_path(_error_location(err))
            if path in secret_paths:
                continue
            problems.append(Problem(path, _describe_error(err)))
        return None, _clean(_dedupe(problems), secret_values)
    except (RecursionError, TypeError, ValueError) as exc:  # pathological input
        return None, _clean([*secrets, Problem("", f"cannot validate: {exc}")], secret_values)
    if secrets:
        return None, _clean(secrets, secret_values)
    return job, []


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return out


def parse_job(source: RARLJob | dict[str, Any] | str | bytes, *, origin: str | None = None) -> RARLJob:
    """A RARLJob from a model, a dict or YAML text (one document). Raises ``InvalidSpec``.

    A typed job is already valid, but gets the same secret scan as a document: its labels and annotations
    reach the cluster just the same.
    """
    if isinstance(source, RARLJob):
        secrets, secret_values = _secret_scan(source.to_dict(include_status=False))
        if secrets:
            raise InvalidSpec(_clean(secrets, secret_values), origin)
        return source
    if isinstance(source, (str, bytes)):
        docs, problems = load_yaml_documents(source)
        if problems:
            raise InvalidSpec(problems, origin)
        if len(docs) != 1:
            raise InvalidSpec([Problem("", f"expected one RARLJob document, found {len(docs)}")], origin)
        source = docs[0]
    job, problems = validate_document(source)
    if job is None:
        raise InvalidSpec(problems, origin)
    return job


def cluster_problems(job: RARLJob) -> list[Problem]:
    """What a valid job must also meet to run on Kubernetes: nothing it keeps may live only inside its pods.

    A trainer pod's disk is an emptyDir that goes away with the pod: checkpoints written there are gone
    before a retry (a new pod) could resume from them, and so is the exported model. What outlives the
    pod: ``s3://`` URIs, or paths on the PersistentVolumeClaim that ``resources.cacheVolumeClaim`` mounts.
    """
    from pathlib import PurePosixPath

    from rarl.api.uri import is_s3, local_path
    from rarl.manifests import CACHE_DIR

    claim = job.spec.resources.cache_volume_claim
    problems = []
    for path, uri in (("spec.checkpoint.uri", job.spec.checkpoint.uri), ("spec.output.uri", job.spec.output.uri)):
        if is_s3(uri):
            continue
        local = PurePosixPath(local_path(uri).as_posix())
        if claim and local.is_absolute() and local.is_relative_to(CACHE_DIR) and local != PurePosixPath(CACHE_DIR):
            continue
        problems.append(Problem(path, (
            f"{redact_uri(uri)!r} is a folder inside the trainer pod, whose disk goes away with the pod (a retry would "
            f"find no checkpoint, and the model would be lost): use an s3:// URI (with spec.storage), or a path under "
            f"{CACHE_DIR}/ with resources.cacheVolumeClaim naming a PersistentVolumeClaim")))
    return problems
