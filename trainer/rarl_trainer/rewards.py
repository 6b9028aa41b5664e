"""RARL's verifiable reward: format, regression and ranking terms, each in [0, 1].

``score`` rates one completion for one query; ``score_group`` rates the G rollouts of one query;
``score_batch`` rates a flat batch (groups of G consecutive completions) and adds the optional
batch fidelity ranking for n = 1 queries. Pure Python (+ numpy-free hot path), never raises on
any completion text.

Decisions the RARL paper leaves open:

* Values are clipped to the target range [min, max] before scoring (TargetSpec says answers are
  clipped); a value outside the range therefore scores as the nearest bound.
* Any parse failure scores 0 on regression and ranking; format is 1 only with the full tag
  structure (think block + one answer block + exactly n numbers, see ``answers``). An answer
  without a think block still has its values scored (format 0).
* Ranking (n >= 2): ``alpha * (tau_b + 1) / 2 + (1 - alpha) * exact_order``. tau_b of constant
  predictions (undefined) is taken as 0 (no ranking information: half the tau credit).
  ``exact_order`` is 1 when the predicted values respect the targets' weak order: every pair with
  y_i < y_j has v_i < v_j; pairs with tied targets are unconstrained. When all targets of the list
  are tied there is nothing to rank and the ranking term is 1 for every parsed answer (constant
  within a group, so it does not move advantages).
* Ranking for n = 1 without batch ranking is 0: it is the same for every rollout of a group, so it
  has no effect on GRPO advantages (it only lowers the logged total).
* Batch ranking (n = 1, ``batch_ranking``): for rollout k of query i with value v, and every other
  n = 1 query j of the batch with valid rollouts (mean mu_j, variance s_j^2 over its rollouts),
  ``p = Phi((v - mu_j) / sqrt(s_i^2 + s_j^2 + eps))`` where s_i^2 is the variance of query i's
  rollouts; ground truth ``q = 1, 0 or 0.5`` (y_i > y_j, <, =); fidelity
  ``sqrt(p q) + sqrt((1 - p)(1 - q))``; the reward is the mean over j (VisualQuality-R1).
  eps = (1e-3 * range)^2 keeps the CDF finite when a group agrees exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rarl.answers import has_tag_structure, parse_answer
from rarl.metrics import pair_counts

if TYPE_CHECKING:
    from rarl.api.types import RARLJobSpec, StageSpec

__all__ = [
    "RewardBreakdown",
    "RewardConfig",
    "batch_fidelity_rewards",
    "ranking_reward",
    "regression_reward",
    "score",
    "score_batch",
    "score_group",
    "score_values",
]


@dataclass(frozen=True)
class RewardConfig:
    """Everything the reward needs; build it with ``from_spec`` in the trainer."""

    delta: float
    target_min: float
    target_max: float
    w_regression: float = 1.0
    w_ranking: float = 1.0
    w_format: float = 0.5
    alpha: float = 0.5
    batch_ranking: bool = False

    def __post_init__(self) -> None:
        if not self.delta > 0:
            raise ValueError(f"delta must be > 0, got {self.delta}")
        if not self.target_max > self.target_min:
            raise ValueError("target_max must be greater than target_min")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    @classmethod
    def from_spec(cls, job_spec: RARLJobSpec, stage: StageSpec | None = None) -> RewardConfig:
        """Delta from ``job_spec.delta()``, weights from the stage (if set) or ``reward.weights``."""
        target = job_spec.dataset.target
        weights = stage.reward_weights if stage is not None and stage.reward_weights is not None else None
        weights = weights or job_spec.reward.weights
        return cls(
            delta=float(job_spec.delta()),
            target_min=float(target.min),
            target_max=float(target.max),
            w_regression=float(weights.regression),
            w_ranking=float(weights.ranking),
            w_format=float(weights.format),
            alpha=float(job_spec.reward.ranking_alpha),
            batch_ranking=bool(job_spec.reward.batch_ranking),
        )

    @property
    def max_total(self) -> float:
        """Total reward of a perfect answer (n >= 2, or n = 1 with batch ranking)."""
        return self.w_regression + self.w_ranking + self.w_format


@dataclass(frozen=True)
class RewardBreakdown:
    """The reward terms of one completion; ``values`` are the parsed (clipped) values or None."""

    format: float
    regression: float
    ranking: float
    total: float
    values: tuple[float, ...] | None = None
    reason: str | None = None


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else min(v, hi)


def regression_reward(values: Sequence[float], targets: Sequence[float], delta: float) -> float:
    """mean_i max(0, 1 - (v_i - y_i)^2 / delta^2)."""
    inv = 1.0 / (delta * delta)
    total = 0.0
    for v, y in zip(values, targets, strict=True):
        d = v - y
        r = 1.0 - d * d * inv
        if r > 0.0:
            total += r
    return total / len(targets)


def ranking_reward(values: Sequence[float], targets: Sequence[float], alpha: float) -> float:
    """alpha * (tau_b + 1)/2 + (1 - alpha) * exact_order, for n >= 2 (see module doc for ties)."""
    if len(targets) < 2:
        return 0.0
    first = targets[0]
    if all(t == first for t in targets):
        return 1.0
    concordant, discordant, ties_v, ties_y = pair_counts(values, targets)
    denom = math.sqrt((concordant + discordant + ties_v) * (concordant + discordant + ties_y))
    tau = (concordant - discordant) / denom if denom else 0.0  # constant predictions: no ranking info
    # Exact (weak) order: no pair with distinct targets is discordant or tied in the prediction.
    exact = 1.0 if discordant == 0 and ties_v == 0 else 0.0
    return _clip(alpha * (tau + 1.0) / 2.0 + (1.0 - alpha) * exact, 0.0, 1.0)


def _total(cfg: RewardConfig, fmt: float, reg: float, rank: float) -> float:
    return cfg.w_regression * reg + cfg.w_ranking * rank + cfg.w_format * fmt


def score_values(values: Sequence[float], targets: Sequence[float], cfg: RewardConfig, fmt: float = 1.0) -> RewardBreakdown:
    """Score already-parsed values (clipped to the range first); ranking 0 for n = 1."""
    clipped = tuple(_clip(float(v), cfg.target_min, cfg.target_max) for v in values)
    reg = regression_reward(clipped, targets, cfg.delta)
    rank = ranking_reward(clipped, targets, cfg.alpha) if len(targets) >= 2 else 0.0
    return RewardBreakdown(fmt, reg, rank, _total(cfg, fmt, reg, rank), clipped, None)


def score(completion_text: str, targets: Sequence[float], cfg: RewardConfig) -> RewardBreakdown:
    """Reward of one completion for a query with these targets; never raises."""
    try:
        n = len(targets)
        parsed = parse_answer(completion_text, n)
        if parsed.values is None:
            return RewardBreakdown(0.0, 0.0, 0.0, 0.0, None, parsed.reason)
        fmt = 1.0 if has_tag_structure(completion_text) else 0.0
        out = score_values(parsed.values, targets, cfg, fmt)
        if fmt == 0.0:
            return RewardBreakdown(out.format, out.regression, out.ranking, out.total, out.values, "no think block")
        return out
    except Exception as exc:  # pragma: no cover - rewards must never raise
        return RewardBreakdown(0.0, 0.0, 0.0, 0.0, None, f"reward error: {type(exc).__name__}")


def score_group(completions: Sequence[str], targets: Sequence[float], cfg: RewardConfig) -> list[RewardBreakdown]:
    """Rewards of the G rollouts of one query (no batch ranking: that needs the other queries)."""
    targets = [float(t) for t in targets]
    return [score(c, targets, cfg) for c in completions]


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _fidelity(p: float, q: float) -> float:
    return math.sqrt(max(p * q, 0.0)) + math.sqrt(max((1.0 - p) * (1.0 - q), 0.0))


def batch_fidelity_rewards(
    values: Sequence[Sequence[float | None]], targets: Sequence[float], value_range: float
) -> list[list[float]]:
    """Thurstone fidelity ranking reward per rollout: ``values[g][k]`` is rollout k of n = 1 query g.

    None marks a failed parse (reward 0, left out of the group statistics). Queries with no valid
    rollout are left out as comparison partners; with fewer than two usable queries every reward is 0.
    """
    eps = (1e-3 * value_range) ** 2
    stats: list[tuple[float, float] | None] = []
    for group in values:
        valid = [v for v in group if v is not None]
        if not valid:
            stats.append(None)
            continue
        mu = sum(valid) / len(valid)
        var = sum((v - mu) ** 2 for v in valid) / len(valid)
        stats.append((mu, var))
    out: list[list[float]] = []
    for i, group in enumerate(values):
        own = stats[i]
        partners = [j for j, s in enumerate(stats) if j != i and s is not None]
        if own is None or not partners:
            out.append([0.0] * len(group))
            continue
        rewards = []
        for v in group:
            if v is None:
                rewards.append(0.0)
                continue
            total = 0.0
            for j in partners:
                mu_j, var_j = stats[j]  # type: ignore[misc]
                p = _phi((v - mu_j) / math.sqrt(own[1] + var_j + eps))
                dy = targets[i] - targets[j]
                q = 1.0 if dy > 0 else 0.0 if dy < 0 else 0.5
                total += _fidelity(p, q)
            rewards.append(_clip(total / len(partners), 0.0, 1.0))
        out.append(rewards)
    return out


def score_batch(
    completions: Sequence[str],
    targets: Sequence[Sequence[float]],
    cfg: RewardConfig,
    group_size: int,
) -> list[RewardBreakdown]:
    """Rewards of a flat batch: ``completions[g*G:(g+1)*G]`` answer the query with ``targets[g]``.

    With ``cfg.batch_ranking`` the ranking term of n = 1 rollouts is the batch fidelity reward
    against the other n = 1 queries of the batch (n >= 2 queries keep their list ranking).
    """
    if group_size < 1 or len(completions) != group_size * len(targets):
        raise ValueError(
            f"{len(completions)} completions do not form {len(targets)} groups of {group_size}"
        )
    out: list[RewardBreakdown] = []
    for g, tgt in enumerate(targets):
        out.extend(score_group(completions[g * group_size:(g + 1) * group_size], tgt, cfg))
    if not cfg.batch_ranking:
        return out
    single = [g for g, tgt in enumerate(targets) if len(tgt) == 1]
    if len(single) < 2:
        return out
    values = [
        [out[g * group_size + k].values[0] if out[g * group_size + k].values else None for k in range(group_size)]
        for g in single
    ]
    fid = batch_fidelity_rewards(values, [float(targets[g][0]) for g in single], cfg.target_max - cfg.target_min)
    for gi, g in enumerate(single):
        for k in range(group_size):
            idx = g * group_size + k
            b = out[idx]
            if b.values is None:
                continue
            rank = fid[gi][k]
            out[idx] = RewardBreakdown(b.format, b.regression, rank, _total(cfg, b.format, b.regression, rank),
                                       b.values, b.reason)
    return out
