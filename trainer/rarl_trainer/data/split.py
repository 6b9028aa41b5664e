"""The eval share of a train location (when the spec names no eval location) and the train cap.

Held-out eval: a seeded permutation (seed ``SPLIT_SEED``) of the train items in reading order;
``ceil(eval_fraction * N)`` items (at least 1, at most N - 1) go to eval. ``max_items`` applies
to train only, after a seeded shuffle.
"""

from __future__ import annotations

import math

import numpy as np

from rarl_trainer.data.items import Item, Split

SPLIT_SEED = 0


def held_out(count: int, fraction: float) -> set[int]:
    """Indices of the eval share: seeded permutation, ceil(fraction * count), at least 1, at most count - 1."""
    if count < 2:
        return set()
    n_eval = min(count - 1, max(1, math.ceil(fraction * count)))
    perm = np.random.default_rng(SPLIT_SEED).permutation(count)
    return {int(i) for i in perm[:n_eval]}


def split_share(items: list[Item], split: Split, fraction: float) -> list[Item]:
    """The train or the eval share of the items read from one location, in reading order."""
    held = held_out(len(items), fraction)
    keep_eval = split == "eval"
    return [it for i, it in enumerate(items) if (i in held) == keep_eval]


def cap_train(items: list[Item], max_items: int | None) -> list[Item]:
    """At most ``max_items`` train items, drawn by a seeded shuffle (in the order drawn)."""
    if max_items is None or len(items) <= max_items:
        return items
    perm = np.random.default_rng(SPLIT_SEED + 1).permutation(len(items))
    return [items[int(i)] for i in perm[:max_items]]
