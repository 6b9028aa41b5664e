"""Which spec fields are *training settings*: the ones a checkpoint belongs to.

A checkpoint written under one set of training settings continues only under the same set
(``checkpoint.onSpecChange`` says otherwise). The trainer refuses a changed set when it resumes;
the CLI says the same before it starts a local job. Pure functions of the spec.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rarl.api.types import RARLJobSpec

TRAINING_FIELDS = {"model", "dataset", "reward", "stages", "grpo"}


def training_settings(spec: RARLJobSpec, by_alias: bool = False) -> dict[str, Any]:
    """The spec fields that determine the training trajectory (not where it runs or stores)."""
    doc = spec.model_dump(mode="json", include=TRAINING_FIELDS, by_alias=by_alias)
    # How rollouts are computed is not what is trained: switching engines on resume is legitimate, and
    # hashes of checkpoints written before the field existed stay the same.
    doc.get("grpo", {}).pop("rolloutEngine" if by_alias else "rollout_engine", None)
    return doc


def config_hash(spec: RARLJobSpec) -> str:
    """A short hash of ``training_settings`` (written into every checkpoint's manifest)."""
    return hashlib.sha256(json.dumps(training_settings(spec), sort_keys=True).encode()).hexdigest()[:16]


def training_settings_digest(spec: RARLJobSpec) -> dict[str, str]:
    """A short hash per training-settings field (``spec.model``, ``spec.grpo``...): small enough for an
    annotation, and a changed field can still be named."""
    return {field: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]
            for field, value in sorted(training_settings(spec, by_alias=True).items())}


def changed_settings(old: Any, new: Any, path: str = "") -> list[str]:
    """``path: old -> new`` for every leaf that differs between two ``training_settings(by_alias=True)``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else key
            if key not in old:
                out.append(f"{sub}: (absent) -> {json.dumps(new[key])}")
            elif key not in new:
                out.append(f"{sub}: {json.dumps(old[key])} -> (absent)")
            else:
                out.extend(changed_settings(old[key], new[key], sub))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and all(
            isinstance(x, dict) for x in old + new):
        return [c for i, (a, b) in enumerate(zip(old, new, strict=True)) for c in changed_settings(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {json.dumps(old)} -> {json.dumps(new)}"]


def describe_changes(changes: list[str], limit: int = 10) -> str:
    """The changes in one line (the first ``limit``)."""
    if not changes:
        return "settings hash differs (the checkpoint predates the record of which field changed)"
    more = f" (and {len(changes) - limit} more)" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more


def spec_change_refusal(where: str, what: str) -> str:
    """The one message for a refused resume (trainer and CLI)."""
    return (f"checkpoint: {where} was written under other training settings: {what}. To train the new settings, "
            "use a new job name or checkpoint.uri, or set checkpoint.onSpecChange to restart (delete those "
            "checkpoints and start from step 0) or resume (continue from them anyway)")
