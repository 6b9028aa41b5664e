"""The README's RARLJob reference is generated from the types and kept in sync."""

from pathlib import Path

from rarl.api.docs import BEGIN, END, reference_markdown, render_readme_section
from rarl.api.types import RARLJobSpec

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_reference_is_in_sync():
    text = README.read_text()
    assert BEGIN in text and END in text, "README lacks the generated reference markers"
    start = text.index(BEGIN)
    end = text.index(END) + len(END)
    assert text[start:end] == render_readme_section(), "run `make docs` to regenerate the README reference"


def test_reference_lists_every_top_level_field():
    md = reference_markdown()
    for name, info in RARLJobSpec.model_fields.items():
        key = info.alias or name
        assert f"| `spec.{key}` |" in md or f"| `spec.{key}[]` |" in md
    assert "| `spec.stages[].rmo.probability` |" in md


def _type_column(md: str) -> list[str]:
    return [line.split(" | ")[1] for line in md.splitlines()[2:]]


def test_types_are_written_as_in_yaml_never_python_reprs():
    md = reference_markdown()
    for bad in ("Optional[", "<class", "NoneType", "typing."):
        assert bad not in md, bad
    for kind in _type_column(md):
        assert kind.count("[") == kind.count("]") and kind.count("(") == kind.count(")"), kind
        assert not any(bad in kind for bad in ("[", "Literal", "Annotated", "Spec")), kind
        assert not set(kind.replace("(", " ").replace(")", " ").split()) & {"str", "int", "dict", "list[str]"}, kind
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ")[1] for line in md.splitlines()[2:]}
    assert rows["spec.stages[].listSizes"] == "list of integer"
    assert rows["spec.dataset.train"] == "string or null"
    assert rows["spec.dataset.maxItems"] == "integer or null"
    assert rows["spec.dataset.modality"] == "image \\| text"
    assert rows["spec.resources.tolerations[].operator"] == "Exists \\| Equal \\| null"
    assert rows["spec.resources.shmSize"].startswith("quantity")
    assert rows["spec.model"] == "object"
    assert rows["spec.resources.nodeSelector"] == "map of string to string"
