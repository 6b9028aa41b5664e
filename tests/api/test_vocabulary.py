"""The shared vocabulary (``rarl.api.vocabulary``, ``rarl.api.uri``): its rules, and that it has no second copy.

The pure rules are checked as tables. The operator, the local backend and the trainer import the
vocabulary; the source scans below fail when a package writes one of its words again (a label key, an
environment name, the default image, a list of phases) or parses the location grammar itself.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest
import yaml

from rarl.api import vocabulary
from rarl.api.crd import build_crd
from rarl.api.vocabulary import (
    ACTIVE_PHASES,
    PHASES,
    TERMINAL_PHASES,
    ExitCode,
    Outcome,
    Phase,
    RetryDecision,
    after_failed_attempt,
    classify_exit,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "sdk" / "rarl", ROOT / "operator" / "rarl_operator", ROOT / "trainer" / "rarl_trainer"]
VOCABULARY = {ROOT / "sdk" / "rarl" / "api" / "vocabulary.py", ROOT / "sdk" / "rarl" / "api" / "uri.py"}
SOURCES = sorted(p for pkg in PACKAGES for p in pkg.rglob("*.py") if p not in VOCABULARY)


@pytest.mark.parametrize(("code", "outcome"), [
    (0, Outcome.SUCCEEDED), (2, Outcome.CONFIG_ERROR), (3, Outcome.DISRUPTION),
    (1, Outcome.CRASH), (137, Outcome.CRASH), (-15, Outcome.CRASH), (4, Outcome.CRASH),
])
def test_classify_exit(code, outcome):
    assert classify_exit(code) is outcome


def test_exit_codes_are_the_trainers_contract():
    assert [(c.name, int(c)) for c in ExitCode] == [("OK", 0), ("CRASH", 1), ("CONFIG", 2), ("INTERRUPTED", 3)]


@pytest.mark.parametrize(("outcome", "restarts", "decision"), [
    (Outcome.CONFIG_ERROR, 0, RetryDecision(retry=False, restarts=0)),
    (Outcome.DISRUPTION, 2, RetryDecision(retry=True, restarts=2)),  # free, even with the budget spent
    (Outcome.CRASH, 0, RetryDecision(retry=True, restarts=1)),
    (Outcome.CRASH, 1, RetryDecision(retry=True, restarts=2)),
    (Outcome.CRASH, 2, RetryDecision(retry=False, restarts=2)),  # maxRestarts=2 spent
])
def test_retry_policy(outcome, restarts, decision):
    assert after_failed_attempt(outcome, restarts, max_restarts=2) == decision


def test_a_success_is_not_a_failed_attempt():
    with pytest.raises(ValueError, match="not a failure"):
        after_failed_attempt(Outcome.SUCCEEDED, 0, 2)


def test_phase_lists_agree_with_the_phase_type_and_the_crd():
    assert set(PHASES) == set(get_args(Phase)) and len(PHASES) == len(get_args(Phase))
    assert TERMINAL_PHASES | ACTIVE_PHASES | {"Suspended"} == set(PHASES)
    assert not TERMINAL_PHASES & ACTIVE_PHASES
    status = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert set(status["properties"]["phase"]["enum"]) == set(PHASES)


def test_the_charts_default_trainer_image_is_the_vocabularys():
    values = yaml.safe_load((ROOT / "charts" / "rarl-operator" / "values.yaml").read_text())
    assert values["trainer"]["image"] == vocabulary.DEFAULT_TRAINER_IMAGE


def _words() -> dict[str, str]:
    """The vocabulary's string constants that are names of something (labels, annotations, env, image)."""
    prefixes = ("LABEL_", "ANNOTATION_", "ENV_", "DEFAULT_TRAINER_IMAGE")
    return {name: value for name, value in vars(vocabulary).items()
            if name.startswith(prefixes) and isinstance(value, str)}


def _strings(path: Path):
    """(line, string) of every string constant except docstrings."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_package_writes_a_vocabulary_word_again():
    words = {value: name for name, value in _words().items()}
    assert len(words) >= 9  # the scan looks for something
    copies = [f"{path.relative_to(ROOT)}:{line}: {value!r} is vocabulary.{words[value]}"
              for path in SOURCES for line, value in _strings(path) if value in words]
    assert not copies, "import these from rarl.api.vocabulary:\n" + "\n".join(copies)


def test_no_package_writes_a_list_of_phases_again():
    """A set, list or tuple of two or more phase names is a copy of the vocabulary's phase lists."""
    copies = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Set, ast.List, ast.Tuple)):
                names = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in PHASES]
                if len(names) >= 2:
                    copies.append(f"{path.relative_to(ROOT)}:{node.lineno}: {names}")
    assert not copies, "use PHASES, TERMINAL_PHASES, ACTIVE_PHASES or the CONDITION_* names:\n" + "\n".join(copies)


def _parses_a_scheme(node: ast.AST) -> bool:
    """``"://" in x``, ``x.split("://")``, ``x.removeprefix("file://")``, ``x[len("file://"):]`` and the like."""
    def has_scheme_text(n: ast.AST) -> bool:
        return isinstance(n, ast.Constant) and isinstance(n.value, str) and "://" in n.value

    if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
        return has_scheme_text(node.left)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in {"split", "rsplit", "partition", "removeprefix", "lstrip", "replace"}:
            return any(has_scheme_text(a) for a in node.args)
        if node.func.attr == "startswith" and node.args and has_scheme_text(node.args[0]):
            # a bare prefix test is a classification; slicing it off afterwards is parsing (caught below)
            return False
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
        return any(has_scheme_text(a) for a in node.args)
    return False


def test_no_package_parses_the_location_grammar_again():
    copies = [f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
              for path in SOURCES for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
              if _parses_a_scheme(node)]
    assert not copies, "parse locations with rarl.api.uri:\n" + "\n".join(copies)


@pytest.mark.parametrize("value,path", [
    ("./models/m", True), ("/models/m", True), ("~/m", True), ("file:///models/m", True),
    ("Qwen/Qwen2.5-VL-3B-Instruct", False), ("s3://bucket/m", False), ("builtin:tiny-lm", False),
])
def test_a_path_is_named_explicitly_or_it_is_a_hub_id(value, path):
    """One rule for validate's warnings and the trainer's model loading (rarl.api.uri.names_a_path)."""
    from rarl.api.uri import names_a_path

    assert names_a_path(value) is path
