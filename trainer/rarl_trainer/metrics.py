"""Shim: the metrics live in ``rarl.metrics``; remove once ``rewards.py`` and ``bench/bench_learning.py`` import it."""

from rarl.metrics import evaluate, finite_metrics, pair_counts

__all__ = ["evaluate", "finite_metrics", "pair_counts"]
