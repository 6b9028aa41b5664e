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
