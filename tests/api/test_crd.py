"""The CRD generated from the types: committed copy in sync, structural, valid, and agreeing with pydantic."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from rarl.api import parse_job
from rarl.api.crd import SchemaError, _structural, build_crd, crd_yaml
from rarl.api.settings import training_settings

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "charts" / "rarl-operator" / "crds" / "rarljobs.rarl.dev.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def schema() -> dict:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict, path: str = ""):
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def test_committed_crd_equals_generated():
    assert COMMITTED.read_text() == crd_yaml(), "run `make crd` to regenerate the committed CRD"


def test_crd_passes_kubernetes_validate():
    kubernetes_validate.validate(build_crd(), "1.30.0", strict=True)
    kubernetes_validate.validate(yaml.safe_load(COMMITTED.read_text()), "1.30.0", strict=True)


def test_crd_names_and_columns():
    spec = build_crd()["spec"]
    assert spec["group"] == "rarl.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["plural"] == "rarljobs" and spec["names"]["shortNames"] == ["rj"]
    assert spec["names"]["categories"] == ["rarl"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Stage", "Step", "Reward", "Age"]


def test_schema_is_structural():
    for path, node in walk(schema()):
        assert "$ref" not in node and "$defs" not in node and "allOf" not in node, path
        assert "default" not in node and "const" not in node, path
        if "anyOf" in node:  # only the int-or-string pattern, with types inside anyOf and none outside
            assert node.get("x-kubernetes-int-or-string") is True and "type" not in node, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        assert node.get("type") != "null", path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_every_field_is_described_for_kubectl_explain():
    missing = [p for p, n in walk(schema()) if p and not p.endswith("[]") and p != ".metadata"
               and not p.endswith(".*") and "description" not in n]
    assert missing == []


def test_optional_fields_are_nullable_and_required_fields_listed():
    spec = schema()["properties"]["spec"]
    assert set(spec["required"]) == {"model", "dataset", "checkpoint", "output"}
    assert spec["properties"]["reward"]["properties"]["delta"]["nullable"] is True
    assert spec["properties"]["stages"]["items"]["required"] == ["name", "steps"]
    node_selector = spec["properties"]["resources"]["properties"]["nodeSelector"]
    assert node_selector["additionalProperties"] == {"type": "string"}
    status = schema()["properties"]["status"]["properties"]
    assert "modelURI" in status and status["metrics"]["additionalProperties"]["type"] == "number"


def test_training_settings_carry_immutability_rules_and_nothing_else_does():
    """Exactly the fields ``training_settings`` reads are ``self == oldSelf`` (rolloutEngine, resources,
    runPolicy, checkpoint... stay mutable: a suspended job resumes with new resources)."""
    spec = schema()["properties"]["spec"]
    settings = training_settings(parse_job(EXAMPLES[0].read_text()).spec, by_alias=True)
    expected = set()
    for name, value in settings.items():
        fields = set(spec["properties"][name].get("properties", {}))
        if isinstance(value, dict) and fields - set(value):  # part of it may change: a rule per field
            expected |= {f"spec.{name}.{sub}" for sub in value}
        else:
            expected.add(f"spec.{name}")
    ruled = {path: node["x-kubernetes-validations"] for path, node in walk(spec, "spec")
             if "x-kubernetes-validations" in node}
    assert set(ruled) == expected
    assert "spec.grpo.learningRate" in ruled and "spec.grpo.rolloutEngine" not in ruled
    for path, rules in ruled.items():
        assert rules == [{"rule": "self == oldSelf", "message": f"{path} is immutable once the job exists"}]
    committed = yaml.safe_load(COMMITTED.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert committed["properties"]["spec"]["properties"]["model"]["x-kubernetes-validations"] == ruled["spec.model"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_satisfy_the_crd_schema(path):
    """What pydantic accepts, the API server's schema accepts too (OpenAPI 3.0 bounds are draft-4 style)."""
    doc = parse_job(path.read_text()).to_dict()
    jsonschema.Draft4Validator(schema()).validate(doc)


def test_crd_schema_rejects_what_pydantic_rejects():
    doc = parse_job(EXAMPLES[0].read_text()).to_dict()
    doc["spec"]["resources"]["nodes"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema()).validate(doc)
    doc["spec"]["resources"]["nodes"] = 1
    doc["spec"]["stages"][0]["rmo"]["probability"] = 1.5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema()).validate(doc)


def test_non_structural_unions_are_refused():
    with pytest.raises(SchemaError, match="union of 2 types"):
        _structural({"anyOf": [{"type": "string"}, {"type": "integer"}]}, {}, "x")
    with pytest.raises(SchemaError, match="untyped"):
        _structural({"description": "nothing"}, {}, "x")
