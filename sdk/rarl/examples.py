"""The example RARLJobs shipped with the package (the same files as examples/ in the repo)."""

from __future__ import annotations

from importlib import resources

_PACKAGE_DIR = "example_files"


def _folder():
    return resources.files("rarl").joinpath(_PACKAGE_DIR)


def example_names() -> list[str]:
    """Names of the bundled examples, quickstart first."""
    names = sorted(p.name[:-5] for p in _folder().iterdir() if p.name.endswith(".yaml"))
    return sorted(names, key=lambda n: (n != "quickstart", n))


def example_text(name: str) -> str:
    """The commented YAML of one example."""
    return _folder().joinpath(f"{name}.yaml").read_text()
