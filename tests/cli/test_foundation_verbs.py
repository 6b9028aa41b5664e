"""rarlctl validate / crd / init / --version / --help: output, exit codes, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rarl.api.crd import crd_yaml
from rarl.examples import example_names

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"

BAD = """\
apiVersion: rarl.dev/v1alpha1
kind: RARLJob
metadata: {name: bad}
spec:
  model: {base: m}
  dataset: {format: synthetic}
  stages:
    - {name: a, steps: 1}
    - {name: b, steps: 1, rmo: {probability: 1.5}}
  resources: {nodes: 0}
  checkpoint: {uri: c}
  output: {uri: o}
"""


def test_valid_file_prints_one_ok_line(rarlctl):
    r = rarlctl("validate", "-f", str(QUICKSTART))
    assert r.code == 0
    assert r.out.strip().splitlines() == [f"{QUICKSTART}: OK RARLJob/quickstart"]


def test_invalid_file_prints_one_line_per_problem_with_path(rarlctl, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    r = rarlctl("validate", "-f", str(f))
    assert r.code == 1
    lines = r.out.strip().splitlines()
    assert len(lines) == 2
    assert any(line.startswith(f"{f}: spec.stages[1].rmo.probability: ") and "less than or equal to 1" in line
               for line in lines)
    assert any(line.startswith(f"{f}: spec.resources.nodes: ") for line in lines)
    assert "Traceback" not in r.out + r.err


def test_repeatable_files_and_stdin(rarlctl, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    r = rarlctl("validate", "-f", str(QUICKSTART), "-f", "-", "-f", str(f), stdin=QUICKSTART.read_bytes())
    assert r.code == 1
    assert "<stdin>: OK RARLJob/quickstart" in r.out and f"{QUICKSTART}: OK" in r.out


def test_multi_document_files_are_checked_per_document(rarlctl, tmp_path):
    f = tmp_path / "two.yaml"
    f.write_text(QUICKSTART.read_text() + "\n---\n" + BAD)
    r = rarlctl("validate", "-f", str(f))
    assert r.code == 1
    assert f"{f} (document 1): OK RARLJob/quickstart" in r.out
    assert f"{f} (document 2): spec.resources.nodes:" in r.out


@pytest.mark.parametrize(
    "content,words",
    [
        (b"", "empty"),
        (b"\x00\x89PNG", "binary"),
        (b"key: [unclosed", "not valid YAML"),
        (b"- just\n- a list\n", "expected a mapping"),
        (b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "apiVersion: must be 'rarl.dev/v1alpha1'"),
        (b"apiVersion: rarl.dev/v1alpha1\nkind: RARLJob\nmetadata: {name: x}\nspec:\n  modle: {}\n",
         "did you mean 'model'"),
    ],
)
def test_bad_input_exits_1_with_a_clear_line(rarlctl, tmp_path, content, words):
    f = tmp_path / "x.yaml"
    f.write_bytes(content)
    r = rarlctl("validate", "-f", str(f))
    assert r.code == 1
    assert words in r.out
    assert "Traceback" not in r.out + r.err


def test_unreadable_files_exit_2(rarlctl, tmp_path):
    r = rarlctl("validate", "-f", str(tmp_path / "missing.yaml"))
    assert r.code == 2 and "missing.yaml: no such file" in r.out
    r = rarlctl("validate", "-f", str(tmp_path))
    assert r.code == 2 and "is a directory" in r.out


def test_validate_json_output_parses(rarlctl, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    r = rarlctl("validate", "-f", str(QUICKSTART), "-f", str(f), "-o", "json")
    data = json.loads(r.out)
    assert [d["valid"] for d in data] == [True, False]
    assert any("spec.resources.nodes" in p for p in data[1]["problems"])
    r = rarlctl("-o", "yaml", "validate", "-f", str(QUICKSTART))
    assert yaml.safe_load(r.out)[0]["name"] == "quickstart"


def test_crd_prints_the_generated_crd(rarlctl):
    r = rarlctl("crd")
    assert r.code == 0 and r.out == crd_yaml()
    assert yaml.safe_load(r.out)["metadata"]["name"] == "rarljobs.rarl.dev"
    r = rarlctl("crd", "--reference")
    assert "| `spec.stages[].listSizes` |" in r.out


@pytest.mark.parametrize("name", example_names())
def test_init_writes_an_example_that_validates(rarlctl, tmp_path, name):
    f = tmp_path / f"{name}.yaml"
    r = rarlctl("init", "--example", name, "--file", str(f))
    assert r.code == 0 and f.exists()
    assert f.read_text().lstrip().startswith("#"), "examples are commented"
    assert rarlctl("validate", "-f", str(f)).code == 0
    again = rarlctl("init", "--example", name, "--file", str(f))
    assert again.code == 2 and "already exists" in again.err


def test_init_to_stdout_and_errors(rarlctl):
    r = rarlctl("init")
    assert r.code == 0 and "kind: RARLJob" in r.out and "name: quickstart" in r.out
    r = rarlctl("init", "--example", "imagenet")
    assert r.code == 2 and "unknown example 'imagenet'" in r.err and "quickstart" in r.err
    r = rarlctl("init", "--list")
    assert r.out.split() == example_names()


def test_usage_errors_exit_2(rarlctl):
    assert rarlctl("no-such-verb").code == 2
    assert rarlctl("validate").code == 2
    r = rarlctl("-o", "xml", "validate", "-f", str(QUICKSTART))
    assert r.code == 2 and "Traceback" not in r.err


def test_version_and_help_as_a_real_process(rarlctl_proc):
    r = rarlctl_proc("--version")
    assert r.code == 0 and r.out.strip().startswith("rarlctl 0.")
    r = rarlctl_proc("--help")
    assert r.code == 0
    for verb in ("validate", "crd", "init"):
        assert verb in r.out


def test_validate_as_a_real_process_with_stdin(rarlctl_proc):
    r = rarlctl_proc("validate", "-f", "-", stdin=BAD.encode())
    assert r.code == 1 and "<stdin>: spec.resources.nodes:" in r.out and "Traceback" not in r.err


def test_sdk_import_is_light():
    code = (
        "import sys, rarl, rarl.api, rarl.cli.main, rarl.progress; "
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'kubernetes', 'boto3', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
