"""Dependencies point one way: the SDK (``rarl``) imports neither the operator nor the trainer.

The operator and the trainer import the shared vocabulary, the URI grammar and the manifest
builder from ``rarl``; ``pip install rarl`` (no torch, no kopf) must give a working CLI. These
tests read the import statements of the source files (``ast``), so they see lazy imports too,
and import the pure modules in a fresh interpreter to check what they pull in.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "rarl"

# Running a model needs torch: ``rarlctl predict`` starts the trainer's ``python -m rarl_trainer.predict`` (the
# [trainer] extra) instead of importing it, so no SDK file may import the trainer, not even inside a function.
TRAINER_ALLOWED_INSIDE_FUNCTIONS: set[str] = set()


def _module_name(path: Path) -> str:
    rel = path.relative_to(SDK.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function?) for every import statement of a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, in_function))
                found.extend((f"{child.module}.{alias.name}", in_function) for alias in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def _is_type_checking_only(path: Path, module: str) -> bool:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in ast.walk(node):
                if isinstance(stmt, ast.ImportFrom) and stmt.module == module:
                    return True
    return False


SDK_FILES = sorted(SDK.rglob("*.py"))


def test_the_sdk_never_imports_the_operator_or_the_trainer():
    offenders = []
    for path in SDK_FILES:
        rel = str(path.relative_to(SDK))
        for module, in_function in _imports(path):
            top = module.split(".")[0]
            if top == "rarl_operator":
                offenders.append(f"{rel}: {module}")
            elif top == "rarl_trainer" and not (in_function and rel in TRAINER_ALLOWED_INSIDE_FUNCTIONS):
                if not _is_type_checking_only(path, module):
                    offenders.append(f"{rel}: {module}" + (" (inside a function)" if in_function else ""))
    assert not offenders, "rarl must not import rarl_operator/rarl_trainer:\n" + "\n".join(offenders)


def test_no_import_cycle_between_sdk_modules():
    """Module-level imports inside ``rarl`` form no cycle (a cycle works only by import order)."""
    names = {_module_name(p): p for p in SDK_FILES}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        deps = set()
        for module, in_function in _imports(path):
            if in_function or _is_type_checking_only(path, module):
                continue
            if module in names and module != name:
                deps.add(module)
        graph[name] = deps

    cycles = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            # A package's __init__ importing its own submodules (and those importing siblings
            # through the package) is the normal package pattern, not a cycle between roles.
            if node.startswith(dep + ".") or dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep):], dep]))
            elif dep not in state:
                dfs(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", ["rarl.cli.main", "rarl.cli.jobs", "rarl.cli.app", "rarl.cli.eval_cmd"])
def test_each_cli_module_imports_first_in_a_fresh_interpreter(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)


def test_pure_operator_modules_import_no_kopf():
    code = (
        "import sys, rarl.manifests, rarl.lifecycle, rarl_operator; "
        "assert 'kopf' not in sys.modules, 'kopf imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_rarlctl_eval_works_without_numpy(tmp_path):
    """``pip install rarl`` has no numpy: ``rarlctl eval`` scores rows (and raw completions) in pure Python."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"pred": [3, 1, 2], "target": [3, 2, 1]}\n'
                    '{"completion": "<think>x</think><answer>4</answer>", "target": [5]}\n')
    code = (
        "import sys; sys.modules['numpy'] = None; "  # any numpy import now raises ImportError
        "from rarl.cli.main import main; "
        f"main(['eval', '-p', {str(rows)!r}, '-o', 'json'])"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["count"] == 2 and metrics["invalid_rate"] == 0  # the completion's answer was parsed
    assert metrics["n1/mae"] == 1.0 and metrics["n3/tau"] == pytest.approx(1 / 3)
