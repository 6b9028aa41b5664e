"""Backends of ``rarl.Client``: Kubernetes (the operator runs jobs) and local processes."""

from rarl.backends.base import Backend

__all__ = ["Backend"]
