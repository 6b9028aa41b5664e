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
    "InvalidSpec",
    "JobNotFound",
    "RARLJob",
    "StorageError",
    "WaitTimeout",
    "__version__",
]

from rarl.errors import BackendUnavailable, InvalidSpec, JobNotFound, StorageError, WaitTimeout

if TYPE_CHECKING:
    from rarl.api.types import RARLJob
    from rarl.client import Client


def __getattr__(name: str) -> Any:
    """``rarl.Client`` and ``rarl.RARLJob`` load pydantic on first use, not at import."""
    if name == "Client":
        from rarl.client import Client

        return Client
    if name == "RARLJob":
        from rarl.api.types import RARLJob

        return RARLJob
    raise AttributeError(f"module 'rarl' has no attribute {name!r}")
