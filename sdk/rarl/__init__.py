"""RARL: Ranking-Aware Reinforcement Learning for ordinal regression and ranking.

The SDK import is light: no torch, no transformers, no kubernetes client at
``import rarl``. Heavy pieces load when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "Client",
    "InvalidArgument",
    "InvalidSpec",
    "JobFinished",
    "JobNotFound",
    "KubernetesBackendConfig",
    "LocalBackendConfig",
    "ModelNotExported",
    "RARLJob",
    "ResumeNotice",
    "StorageError",
    "WaitTimeout",
    "__version__",
]

from rarl.errors import (
    BackendUnavailable,
    InvalidArgument,
    InvalidSpec,
    JobFinished,
    JobNotFound,
    ModelNotExported,
    ResumeNotice,
    StorageError,
    WaitTimeout,
)

if TYPE_CHECKING:
    from rarl.api.types import RARLJob
    from rarl.backends.config import KubernetesBackendConfig, LocalBackendConfig
    from rarl.client import Client


def __getattr__(name: str) -> Any:
    """``rarl.Client``, ``rarl.RARLJob`` and the backend configs load pydantic on first use, not at import."""
    if name in ("LocalBackendConfig", "KubernetesBackendConfig"):
        from rarl.backends import config

        return getattr(config, name)
    if name == "Client":
        from rarl.client import Client

        return Client
    if name == "RARLJob":
        from rarl.api.types import RARLJob

        return RARLJob
    raise AttributeError(f"module 'rarl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
