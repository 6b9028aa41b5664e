"""Response Mutation Operations (RMO): revive gradients in groups whose rewards do not differ.

When all G rollouts of a query get (nearly) the same reward, GRPO's advantages vanish. RMO
replaces m rollouts by mutations: each keeps its own reasoning (the think block, byte for byte)
and gets its answer rewritten with the reference values plus controlled noise.

Decisions the RARL paper leaves open:

* Trigger: reward spread (max - min) < epsilon -> "zero_spread"; otherwise with probability p ->
  "random". One uniform number is drawn per group whether or not it is used, so the random
  stream does not depend on the rewards' history.
* Which rollouts: the m lowest-reward ones, ties broken at random (keeps the best samples the
  policy produced). m is capped at G - 1 so at least one rollout of the policy stays; a group of
  one rollout is never mutated (spread is undefined).
* Text: with one think block closed before one answer block, only the answer's content is
  replaced (every other byte is kept); with a think block but no usable answer, the text up to
  ``</think>`` is kept and a new answer block appended; with no usable think block the mutation is
  ``<think>\\n</think><answer>...</answer>`` (a minimal think block).
* Value mode: ``y + N(0, (sigma * range)^2)``, clipped to the range, rounded to precision (and
  clipped again). Order mode: the reference values assigned to the true ascending order after k
  random adjacent swaps. auto: value for n = 1, value or order with equal probability for n >= 2.
* Zero-spread guarantee (zero-spread groups only; "random" ones are not rescored): pass ``score_fn`` (the trainer does, via ``apply_rmo_to_batch``'s
  ``reward_cfg``). After mutating, the group is rescored; if its spread is still 0, the first
  mutated rollout is rewritten with fallbacks until the spread is non-zero: the exact reference,
  then the reference with one value moved by one precision step, by a tenth of the range, to the
  far end of the range, then the reversed order, and as a last resort an answer with one value
  too many (a format failure: only reached when value changes cannot move the reward, e.g. a
  format-only reward on a perfect group). This succeeds for any reward config with a positive
  regression or format weight (or a ranking weight and n >= 2). Without ``score_fn`` the rewards
  cannot be checked and no guarantee is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from rarl.answers import find_answer_span, find_think_span
from rarl_trainer.prompts import format_values
from rarl_trainer.rewards import RewardConfig, score

if TYPE_CHECKING:
    from rarl.api.types import RMOSpec, TargetSpec

__all__ = [
    "MINIMAL_THINK",
    "BatchMutationResult",
    "MutationResult",
    "RMOConfig",
    "apply_rmo_to_batch",
    "mutate_group",
    "mutated_values",
    "rewrite_answer",
]

MINIMAL_THINK = "<think>\n</think>"
ScoreFn = Callable[[str], float]


@dataclass(frozen=True)
class RMOConfig:
    """RMO settings (defaults usable as is); precision and range come from the target spec."""

    enabled: bool = True
    epsilon: float = 0.01
    probability: float = 0.0
    mutations: int = 1
    sigma: float = 0.05
    mode: Literal["auto", "value", "order"] = "auto"
    swaps: int = 1
    precision: float = 1.0
    value_range: tuple[float, float] | None = None

    @classmethod
    def from_spec(cls, rmo: RMOSpec, target_spec: TargetSpec | None = None) -> RMOConfig:
        return cls(
            enabled=rmo.enabled,
            epsilon=float(rmo.epsilon),
            probability=float(rmo.probability),
            mutations=int(rmo.mutations),
            sigma=float(rmo.sigma),
            mode=rmo.mode,
            swaps=int(rmo.swaps),
            precision=float(target_spec.precision) if target_spec is not None else 1.0,
            value_range=(float(target_spec.min), float(target_spec.max)) if target_spec is not None else None,
        )


@dataclass(frozen=True)
class MutationResult:
    """Replaced indices, the whole group's texts after mutation, why it triggered.

    ``rewards``: the group's rewards under ``score_fn`` after mutation, for zero-spread groups
    with a ``score_fn`` (the only case that is rescored); None otherwise.
    """

    indices: list[int]
    completions: list[str]
    reason: Literal["zero_spread", "random"] | None
    rewards: list[float] | None = None


@dataclass(frozen=True)
class BatchMutationResult:
    """A flat batch after RMO: texts, which were mutated, and each group's trigger reason."""

    completions: list[str]
    mutated: list[bool]
    reasons: list[str | None]

    @property
    def mutation_rate(self) -> float:
        """Share of groups mutated (logged every step)."""
        return sum(r is not None for r in self.reasons) / len(self.reasons) if self.reasons else 0.0


def _round_clip(values: Sequence[float], precision: float, lo: float, hi: float) -> list[float]:
    out = []
    for raw in values:
        clipped = min(max(float(raw), lo), hi)
        rounded = round(round(clipped / precision) * precision, 10)
        out.append(min(max(rounded, lo), hi))
    return out


def mutated_values(
    targets: Sequence[float],
    mode: Literal["value", "order"],
    rng: np.random.Generator,
    sigma: float,
    swaps: int,
    precision: float,
    value_range: tuple[float, float],
) -> list[float]:
    """Reference values with noise (value mode) or with k adjacent swaps of the true order (order mode)."""
    lo, hi = value_range
    y = np.asarray(targets, dtype=float)
    if mode == "value" or len(y) < 2:
        noisy = y + rng.normal(0.0, sigma * (hi - lo), size=len(y)) if sigma > 0 else y
        return _round_clip(noisy, precision, lo, hi)
    order = list(np.argsort(y, kind="stable"))
    sorted_values = np.sort(y)
    for raw in rng.integers(0, len(y) - 1, size=swaps):
        j = int(raw)
        order[j], order[j + 1] = order[j + 1], order[j]
    out = np.empty_like(y)
    for rank, item in enumerate(order):
        out[item] = sorted_values[rank]
    return _round_clip(out, precision, lo, hi)


def rewrite_answer(text: str, values: Sequence[float], precision: float) -> str:
    """The completion with only its answer replaced; its think content is kept byte for byte."""
    answer_text = format_values(values, precision)
    think = find_think_span(text)
    answer = find_answer_span(text)
    if think is not None and answer is not None and think[1] <= answer[0]:
        return text[: answer[0]] + answer_text + text[answer[1]:]
    if think is not None:
        close_end = think[1] + len("</think>")
        return text[:close_end] + f"<answer>{answer_text}</answer>"
    return f"{MINIMAL_THINK}<answer>{answer_text}</answer>"


def _fallback_values(targets: Sequence[float], precision: float, value_range: tuple[float, float]) -> list[list[float]]:
    """Answers tried in turn when a zero-spread group still has zero spread after mutation."""
    lo, hi = value_range
    ref = [float(t) for t in targets]
    out = [list(ref)]
    for step in (precision, 0.1 * (hi - lo)):
        moved = list(ref)
        moved[0] = ref[0] + step if ref[0] + step <= hi else ref[0] - step
        out.append(moved)
    far = list(ref)
    far[0] = lo if abs(ref[0] - lo) > abs(ref[0] - hi) else hi
    out.append(far)
    if len(ref) >= 2:
        out.append(sorted(ref, reverse=True) if ref == sorted(ref) else sorted(ref))
    # Last resort (format-only rewards on a perfect group): one value too many, so the format fails.
    out.append([*ref, ref[-1]])
    return [_round_clip(v, precision, lo, hi) for v in out]


def _spread(values: Sequence[float]) -> float:
    return max(values) - min(values) if values else 0.0


def mutate_group(
    completions: Sequence[str],
    rewards: Sequence[float],
    targets: Sequence[float],
    cfg: RMOConfig,
    rng: np.random.Generator,
    precision: float | None = None,
    value_range: tuple[float, float] | None = None,
    score_fn: ScoreFn | None = None,
) -> MutationResult:
    """Mutate one group of G rollouts of the query with these targets (see module doc)."""
    texts = list(completions)
    group = len(texts)
    if len(rewards) != group:
        raise ValueError(f"{group} completions but {len(rewards)} rewards")
    precision = precision if precision is not None else cfg.precision
    value_range = value_range if value_range is not None else cfg.value_range
    if value_range is None:
        raise ValueError("RMO needs the target range (value_range or RMOConfig.value_range)")
    u = float(rng.random())
    if not cfg.enabled or group < 2:
        return MutationResult([], texts, None)
    if _spread(rewards) < cfg.epsilon:
        reason: Literal["zero_spread", "random"] | None = "zero_spread"
    elif u < cfg.probability:
        reason = "random"
    else:
        return MutationResult([], texts, None)

    m = min(cfg.mutations, group - 1)
    tie_break = rng.random(group)
    order = np.lexsort((tie_break, np.asarray(rewards, dtype=float)))
    indices = sorted(int(i) for i in order[:m])
    n = len(targets)
    for idx in indices:
        mode = cfg.mode
        if mode == "auto":
            mode = "value" if n < 2 else ("value" if int(rng.integers(2)) == 0 else "order")
        values = mutated_values(targets, mode, rng, cfg.sigma, cfg.swaps, precision, value_range)
        texts[idx] = rewrite_answer(completions[idx], values, precision)

    if score_fn is None or reason != "zero_spread":
        return MutationResult(indices, texts, reason)
    cache: dict[str, float] = {}

    def cached_score(text: str) -> float:
        if text not in cache:
            cache[text] = float(score_fn(text))
        return cache[text]

    new_rewards = [cached_score(t) for t in texts]
    if _spread(new_rewards) <= 0.0:
        first = indices[0]
        for values in _fallback_values(targets, precision, value_range):
            candidate = rewrite_answer(completions[first], values, precision)
            new_rewards[first] = cached_score(candidate)
            texts[first] = candidate
            if _spread(new_rewards) > 0.0:
                break
    return MutationResult(indices, texts, reason, new_rewards)


def apply_rmo_to_batch(
    completions: Sequence[str],
    group_size: int,
    targets: Sequence[Sequence[float]],
    rewards: Sequence[float],
    cfg: RMOConfig,
    rng: np.random.Generator,
    reward_cfg: RewardConfig | None = None,
    precision: float | None = None,
    value_range: tuple[float, float] | None = None,
) -> BatchMutationResult:
    """RMO over a flat batch (``completions[g*G:(g+1)*G]`` answer ``targets[g]``).

    With ``reward_cfg`` each group is rescored per completion (``rewards.score``, without batch
    ranking) to guarantee a non-zero spread for zero-spread groups; rescore the returned texts
    with ``score_batch`` for the loss.
    """
    if group_size < 1 or len(completions) != group_size * len(targets) or len(rewards) != len(completions):
        raise ValueError(
            f"{len(completions)} completions / {len(rewards)} rewards do not form {len(targets)} groups of {group_size}"
        )
    out: list[str] = []
    mutated: list[bool] = []
    reasons: list[str | None] = []
    for g, tgt in enumerate(targets):
        lo, hi = g * group_size, (g + 1) * group_size
        score_fn: ScoreFn | None = None
        if reward_cfg is not None:

            def score_fn(text: str, _t: Sequence[float] = tgt, _cfg: RewardConfig = reward_cfg) -> float:
                return score(text, _t, _cfg).total

        result = mutate_group(completions[lo:hi], rewards[lo:hi], tgt, cfg, rng, precision, value_range, score_fn)
        out.extend(result.completions)
        chosen = set(result.indices)
        mutated.extend(k in chosen for k in range(group_size))
        reasons.append(result.reason)
    return BatchMutationResult(out, mutated, reasons)
