"""RARL: Ranking-Aware Reinforcement Learning for ordinal regression and ranking.

The SDK import is light: no torch, no transformers, no kubernetes client at
``import rarl``. Heavy pieces load when used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
