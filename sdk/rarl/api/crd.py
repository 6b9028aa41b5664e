"""Generate the RARLJob CustomResourceDefinition from the pydantic types.

Pydantic's JSON schema is not what the API server accepts: it uses ``$ref``,
``anyOf`` with null, ``const`` and numeric ``exclusiveMinimum``. This module
turns it into a *structural* OpenAPI v3 schema: every node typed, references
inlined, ``nullable: true`` for optional fields, no types inside ``anyOf``
except the int-or-string pattern, no defaults (the trainer and operator apply
the pydantic defaults, so one place defines them).

The training settings (``rarl.api.settings``) carry ``self == oldSelf`` rules: the API
server rejects an update that changes them once the job exists.
"""

from __future__ import annotations

from typing import Any

from rarl.api.settings import TRAINING_FIELDS
from rarl.api.types import (
    API_GROUP,
    API_VERSION,
    CATEGORIES,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    RARLJob,
    RARLJobSpec,
    RARLJobStatus,
)

_DROP = {"title", "default", "examples"}
_KEEP = {
    "type", "description", "properties", "required", "items", "additionalProperties", "enum", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
    "maxItems", "pattern", "nullable", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
    "anyOf",
}


# Training-settings parts that may change on resume: ``training_settings`` leaves them out.
_MUTABLE_TRAINING_SETTINGS = {"grpo": {"rolloutEngine"}}


class SchemaError(ValueError):
    """The pydantic schema holds a construct with no structural equivalent."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target = defs[ref.rsplit("/", 1)[-1]]
    merged = dict(_resolve(target, defs))
    for key, value in node.items():  # sibling keywords (a field's own description) win
        if key != "$ref":
            merged[key] = value
    return merged


def _structural(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    description = node.get("description")

    if "anyOf" in node:
        options = [_resolve(o, defs) for o in node["anyOf"]]
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) != 1:
            raise SchemaError(f"{path}: union of {len(non_null)} types has no structural form")
        inner = {k: v for k, v in node.items() if k != "anyOf"}
        inner.update({k: v for k, v in non_null[0].items() if k not in ("description",) or not description})
        out = _structural(inner, defs, path)
        out["nullable"] = True
        return out

    if "allOf" in node:
        if len(node["allOf"]) != 1:
            raise SchemaError(f"{path}: allOf with several schemas")
        inner = {k: v for k, v in node.items() if k != "allOf"}
        inner.update(_resolve(node["allOf"][0], defs))
        if description:
            inner["description"] = description
        return _structural(inner, defs, path)

    if "const" in node:
        node = {**node, "enum": [node["const"]]}
        node.pop("const")
        node.setdefault("type", "string")

    if node.get("x-kubernetes-int-or-string"):
        out["x-kubernetes-int-or-string"] = True
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if "pattern" in node:
            out["pattern"] = node["pattern"]
        if description:
            out["description"] = description
        return out

    kind = node.get("type")
    if kind is None:
        raise SchemaError(f"{path}: untyped schema node")
    out["type"] = kind
    if description:
        out["description"] = description
    for key in ("enum", "format", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern"):
        if key in node:
            out[key] = node[key]
    # JSON Schema 2020 numeric exclusive bounds -> OpenAPI 3.0 boolean form
    if "exclusiveMinimum" in node:
        out["minimum"] = node["exclusiveMinimum"]
        out["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node:
        out["maximum"] = node["exclusiveMaximum"]
        out["exclusiveMaximum"] = True

    if kind == "object":
        props = node.get("properties")
        if props:
            out["properties"] = {
                name: _structural(sub, defs, f"{path}.{name}") for name, sub in props.items()
            }
            if node.get("required"):
                out["required"] = list(node["required"])
        addl = node.get("additionalProperties")
        if isinstance(addl, dict):
            out["additionalProperties"] = _structural(addl, defs, f"{path}.*")
        elif not props:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["items"] = _structural(node.get("items", {}), defs, f"{path}[]")
    unknown = set(node) - _KEEP - _DROP - {"$defs", "const", "allOf", "$ref"}
    if unknown:
        raise SchemaError(f"{path}: unsupported keywords {sorted(unknown)}")
    return out


def structural_schema(model: type) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model (camelCase field names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs, model.__name__)


def immutable_rule(path: str) -> dict[str, str]:
    """A CEL transition rule: the field keeps the value it had (checked only when it existed before)."""
    return {"rule": "self == oldSelf", "message": f"{path} is immutable once the job exists"}


def _mark_immutable(spec: dict[str, Any]) -> dict[str, Any]:
    """The training settings are fixed for the job's life: its checkpoints belong to them."""
    props = spec["properties"]
    for name in sorted(RARLJobSpec.model_fields[f].alias or f for f in TRAINING_FIELDS):
        mutable = _MUTABLE_TRAINING_SETTINGS.get(name)
        if mutable is None:
            props[name]["x-kubernetes-validations"] = [immutable_rule(f"spec.{name}")]
            continue
        for sub, node in props[name]["properties"].items():
            if sub not in mutable:
                node["x-kubernetes-validations"] = [immutable_rule(f"spec.{name}.{sub}")]
    return spec


def build_crd() -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CRD for RARLJob."""
    schema = {
        "type": "object",
        "description": (RARLJob.__doc__ or "").strip(),
        "properties": {
            "apiVersion": {"type": "string", "description": "rarl.dev/v1alpha1."},
            "kind": {"type": "string", "description": "RARLJob."},
            "metadata": {"type": "object"},
            "spec": _mark_immutable(structural_schema(RARLJobSpec)),
            "status": structural_schema(RARLJobStatus),
        },
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "rarl-operator", "app.kubernetes.io/part-of": "rarl"},
        },
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
                        {"name": "Step", "type": "integer", "jsonPath": ".status.step"},
                        {"name": "Reward", "type": "number", "jsonPath": ".status.reward"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as YAML, exactly as committed under charts/rarl-operator/crds/."""
    import yaml

    header = "# Generated from the RARLJob pydantic types by `rarlctl crd`. Do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
