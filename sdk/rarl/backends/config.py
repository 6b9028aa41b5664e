"""Typed backend configurations, checked when built (as kubeflow/sdk's ``*BackendConfig``).

``Client(LocalBackendConfig(home="runs"))`` and ``Client("local", home="runs")`` are the same; the
string form builds the config from its keyword options, so an unknown option is a clear
``InvalidArgument`` that names it instead of a ``TypeError`` from a constructor.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarl.errors import InvalidArgument


@dataclass(frozen=True)
class LocalBackendConfig:
    """Jobs run as local processes; their state lives under ``home``."""

    home: str | Path | None = None
    """Folder of the job state (``jobs/<name>``); default ``$RARL_HOME`` or ``./.rarl``."""

    def __post_init__(self) -> None:
        if self.home is not None and not isinstance(self.home, (str, os.PathLike)):
            raise InvalidArgument(f"home: expected a path, got {type(self.home).__name__}")


@dataclass(frozen=True)
class KubernetesBackendConfig:
    """Jobs are RARLJob custom resources that the operator runs."""

    namespace: str | None = None
    """Namespace of the jobs; default the kubeconfig context's namespace, else ``default``."""
    kubeconfig: str | None = None
    """Path of the kubeconfig file; default ``$KUBECONFIG`` or ``~/.kube/config`` (or in-cluster)."""
    context: str | None = None
    """Kubeconfig context; default the current context."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and not isinstance(value, str):
                raise InvalidArgument(f"{field.name}: expected a string, got {type(value).__name__}")


BackendConfig = LocalBackendConfig | KubernetesBackendConfig

_BY_NAME: dict[str, type[LocalBackendConfig] | type[KubernetesBackendConfig]] = {
    "local": LocalBackendConfig,
    "kubernetes": KubernetesBackendConfig,
}


def config_for(name: str, **options: Any) -> BackendConfig:
    """The config of backend ``name`` from keyword options; InvalidArgument names what is wrong."""
    kind = _BY_NAME.get(name)
    if kind is None:
        raise InvalidArgument(f"backend: unknown backend {name!r}; use one of: {', '.join(_BY_NAME)}")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidArgument(f"{name} backend: unknown option(s) {', '.join(unknown)}; "
                              f"it takes: {', '.join(sorted(known))}")
    return kind(**options)
