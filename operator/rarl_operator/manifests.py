"""Shim: the manifest builders moved to ``rarl.manifests``, the annotation key to ``rarl.api.vocabulary``.

Kept only while tests/operator/test_lifecycle.py and test_restart_and_progress.py import
ANNOTATION_RESTARTS from here; remove it once they import it from ``rarl.api.vocabulary``.
"""

from rarl.api.vocabulary import ANNOTATION_RESTARTS

__all__ = ["ANNOTATION_RESTARTS"]
