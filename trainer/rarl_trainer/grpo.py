"""RARL's GRPO stage on TRL's ``GRPOTrainer``: the ranking-aware reward and RMO inside TRL's step.

Where RMO hooks in (TRL 1.16, through ``trl_seam.GRPOSeam``): ``_generate_single_turn`` returns the sampled completion token
ids; we decode them, score them with the RARL reward, let ``rmo.apply_rmo_to_batch`` replace
completions of flat groups, and re-tokenise the mutated texts (+ EOS) *before* TRL builds its
tensors. Everything downstream is TRL's own code on the mutated completions: the reward
functions rescore them, advantages are computed from those rewards, old/reference log-probs
(when TRL needs them) are computed on the mutated tokens under the current policy, and the loss
treats them like any other completion. Groups can span processes (TRL spreads a prompt's G
rollouts over ranks), so the texts are gathered, every rank runs the same seeded RMO on the
whole batch, and each keeps its slice.

``_generate_and_score_completions`` is wrapped only to hand the batch's targets to that hook
and to log RARL's per-step figures (pre-RMO reward, group spread before/after, mutation rate,
and the collapse diagnostics of ``drift``: bias and spread ratio of the rollouts' answers).
RMO decides on each completion's own reward (without the optional batch ranking term, which
depends on the whole batch); the loss then uses the full reward TRL computes.

Rollouts (``grpo.rolloutEngine``, default merged): ``_generate_single_turn`` runs TRL's own
generation inside ``rollout.RolloutEngine.generating``, which merges the LoRA adapters into the
base weights for the call only (exactly restored afterwards) and, on CUDA, swaps in a static-cache
+ compiled generation config; TRL then computes every log-prob for the loss on the unmerged PEFT
model. The engine also returns the sampling log-probs of the generated tokens, and TRL's
importance-sampling correction (the one of its vLLM path, gated on ``use_vllm``, which
``trl_seam.GRPOSeam`` sets for ``_generate_and_score_completions`` and ``compute_loss`` only)
reweights the loss by exp(training - sampling log-probs): bf16 merged rollouts are not the trained
policy (measured: bench/RESULTS.md). ``trl`` leaves TRL's generation untouched; ``vllm`` is
TRL's colocated vLLM mode.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from rarl_trainer.config import ConfigError
from rarl_trainer.drift import drift_stats
from rarl_trainer.rewards import RewardConfig, score, score_batch
from rarl_trainer.rmo import RMOConfig, apply_rmo_to_batch
from rarl_trainer.rollout import RolloutEngine
from rarl_trainer.sharding import FSDPOnCPUMixin
from rarl_trainer.training_args import training_args_kwargs
from rarl_trainer.trl_seam import GRPOSeam
from rarl_trainer.truncation import truncate_token_lists, vision_token_ids
from rarl_trainer.weights import ExactCheckpointMixin, copy_into_reference

log = logging.getLogger(__name__)

REWARD_TERMS = ("regression", "ranking", "format")


# --------------------------------------------------------------------------- rewards


def completion_text(completion: Any) -> str:
    """TRL passes conversational completions as [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)
    return ""


class RewardTerms:
    """Three TRL reward functions (regression, ranking, format) sharing one scoring pass per batch.

    TRL weights them with ``reward_weights`` into the total, logs each term per step, and
    computes advantages from the total. Scoring is pure Python on the decoded texts.
    """

    def __init__(self, cfg: RewardConfig, group_size: int):
        self.cfg = cfg
        self.group_size = group_size
        self._key: tuple | None = None
        self._cache: list = []
        self.seconds = 0.0  # time spent scoring (benchmarks report it)

    def breakdowns(self, completions: list[Any], targets: list[list[float]]):
        t0 = time.perf_counter()
        try:
            return self._breakdowns(completions, targets)
        finally:
            self.seconds += time.perf_counter() - t0

    def _breakdowns(self, completions: list[Any], targets: list[list[float]]):
        texts = [completion_text(c) for c in completions]
        key = (tuple(texts), tuple(tuple(t) for t in targets))
        if key != self._key:
            G = self.group_size
            if self.cfg.batch_ranking and len(texts) % G == 0:
                self._cache = score_batch(texts, targets[::G], self.cfg, G)
            else:
                self._cache = [score(t, tg, self.cfg) for t, tg in zip(texts, targets, strict=False)]
            self._key = key
        return self._cache

    def functions(self) -> list:
        def make(term: str):
            def fn(prompts, completions, targets, **_: Any) -> list[float]:
                return [float(getattr(b, term)) for b in self.breakdowns(completions, targets)]

            fn.__name__ = term
            return fn

        return [make(t) for t in REWARD_TERMS]

    def weights(self) -> list[float]:
        return [self.cfg.w_regression, self.cfg.w_ranking, self.cfg.w_format]


# --------------------------------------------------------------------------- trainer


def _group_spreads(totals: Sequence[float], group_size: int) -> list[float]:
    return [max(totals[i:i + group_size]) - min(totals[i:i + group_size]) for i in range(0, len(totals), group_size)]


class RARLGRPOTrainer(GRPOSeam, ExactCheckpointMixin, FSDPOnCPUMixin, GRPOTrainer):
    """GRPOTrainer + RARL reward terms + RMO applied between generation and advantage computation.

    TRL's internals are overridden in ``trl_seam.GRPOSeam`` only, which calls the ``rarl_*`` hooks below.
    Checkpoints hold the exact training tensors and restore strictly (``weights.ExactCheckpointMixin``).
    ``reward_terms``: the scorer behind ``reward_funcs`` when they are ``RewardTerms.functions()``,
    kept so benchmarks can read its scoring time. ``reference_from_policy``: the KL reference of a fully
    fine-tuned model (``beta`` > 0) is the policy as this trainer starts, not ``model.base`` (stages after the first).
    """

    def __init__(self, *args, reward_config: RewardConfig, rmo_config: RMOConfig, rmo_seed: int = 0,
                 rollout_engine: str = "merged", max_prompt_length: int | None = None,
                 reward_terms: RewardTerms | None = None, reference_from_policy: bool = False, **kwargs):
        self.rarl_reward_config = reward_config
        self.rarl_reward_terms = reward_terms
        self.rarl_max_prompt_length = max_prompt_length
        self.rarl_rmo_config = rmo_config
        self.rmo_rng = np.random.default_rng(rmo_seed)
        self._rarl_targets: list[list[float]] | None = None
        self._rarl_step_stats: dict[str, float] = {}
        self.rarl_timing = {"reward_rmo_s": 0.0, "generate_s": 0.0, "generated_tokens": 0}
        self._rarl_warned_vision = False  # each warning once per trainer
        self._rarl_warned_shape = False
        super().__init__(*args, **kwargs)
        if reference_from_policy and self.ref_model is not None:
            # TRL builds a fully fine-tuned run's KL reference from model.base; a later stage's is the policy
            # it starts from, as with LoRA (TRL's "ref" adapter copies the trained one); checkpoints carry it
            copy_into_reference(self.accelerator.unwrap_model(self.model), self.accelerator.unwrap_model(self.ref_model))
            self.rarl_checkpoint_reference = True
        self.rarl_vllm = self.use_vllm  # TRL's own vLLM generation (``use_vllm`` is toggled by ``trl_seam.GRPOSeam``)
        self.rarl_engine = None
        if rollout_engine in ("merged", "auto") and not self.use_vllm:
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                # spec.model.sharding: fsdp resolves auto to trl (rollout.resolve_engine); this is the seam's guard
                log.warning("rarl: warning: the merged rollout engine does not support DeepSpeed/FSDP sharded weights; "
                            "using TRL's generate")
            else:
                self.rarl_engine = RolloutEngine(self.model, max_prompt_length=max_prompt_length)

        self.rarl_vision_tokens = vision_token_ids(self.model.config)
        # Sampling log-probs from the merged engine + TRL's importance-sampling correction (module doc).
        self.rarl_is_correction = (self.rarl_engine is not None and bool(self.vllm_importance_sampling_correction)
                                   and not self.tools and self.rollout_func is None)
        if self.rarl_engine is not None and not self.rarl_is_correction:
            log.warning("rarl: warning: merged rollouts without TRL's importance-sampling correction "
                        f"(vllm_importance_sampling_correction={self.vllm_importance_sampling_correction}, tools="
                        f"{bool(self.tools)}, rollout_func={self.rollout_func is not None}): bf16 rollouts are then "
                        "slightly off-policy")

    # -- state for checkpoints (the RMO stream must continue exactly on resume)
    def rarl_state(self) -> dict[str, Any]:
        return {"rmo_rng": self.rmo_rng.bit_generator.state}

    def load_rarl_state(self, state: dict[str, Any]) -> None:
        if state.get("rmo_rng"):
            self.rmo_rng.bit_generator.state = state["rmo_rng"]

    # -- hooks of trl_seam.GRPOSeam
    def rarl_before_batch(self, inputs) -> None:
        """A generation batch starts (TRL's ``_generate_and_score_completions``): its targets, for RMO."""
        self._rarl_targets = [list(map(float, x["targets"])) for x in inputs]
        self._rarl_step_stats = {}

    def rarl_after_batch(self) -> dict[str, float]:
        """The batch is scored: RARL's per-step figures, which the seam logs among TRL's metrics."""
        self._rarl_targets = None
        return self._rarl_step_stats

    def rarl_truncate_prompts(self, prompt_ids, images, fields):
        """After TRL's tokenization: ``grpo.maxPromptLength`` (left truncation, vision tokens kept)."""
        limit = self.rarl_max_prompt_length
        if limit is None:
            return prompt_ids, images, fields

        prompt_ids, fields, cut = truncate_token_lists(prompt_ids, fields, limit, self.rarl_vision_tokens)
        self._rarl_step_stats["rarl/truncated_prompts"] = cut / max(1, len(prompt_ids))
        longest = max((len(p) for p in prompt_ids), default=0)
        if longest > limit and not self._rarl_warned_vision:
            self._rarl_warned_vision = True
            log.warning(f"rarl: warning: grpo.maxPromptLength is {limit} but a prompt's vision tokens alone take {longest} "
                        "tokens; they are kept whole (raise maxPromptLength or shrink the images)")
        return prompt_ids, images, fields

    def rarl_logps_kwargs(self, input_ids, kwargs: dict) -> dict:
        """TRL's log-prob arguments; with truncated prompts, per-token type ids are rebuilt to the truncated width.

        TRL re-runs the processor on the whole prompts for the forward pass, so ``mm_token_type_ids``
        (Qwen-VL) / ``token_type_ids`` (Gemma-style) come back as wide as the uncut prompt. The
        types follow from the token ids (image placeholder 1, video placeholder 2), so rebuilding
        them from the cut sequence is exact.
        """
        if self.rarl_max_prompt_length is not None:
            for key in ("mm_token_type_ids", "token_type_ids"):
                types = kwargs.get(key)
                if types is not None and types.shape[1] != input_ids.shape[1]:
                    kwargs[key] = self._rarl_token_types(input_ids, types.dtype)
        return kwargs

    def _rarl_token_types(self, input_ids, dtype):
        cfg = self.model.config
        types = torch.zeros(input_ids.shape, dtype=dtype, device=input_ids.device)
        for attr, value in (("image_token_id", 1), ("image_token_index", 1), ("video_token_id", 2)):
            tid = getattr(cfg, attr, None)
            if isinstance(tid, int):
                types[input_ids == tid] = value
        return types

    def rarl_generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations,
                                  has_tool_images=False):
        """TRL's generation (or the rollout engine's), then RMO on the sampled completions of a training batch."""
        t0 = time.perf_counter()
        completion_ids, logprobs = self._rarl_generate(prompt_ids, images, multimodal_fields, num_generations,
                                                       has_tool_images)
        self.rarl_timing["generate_s"] += time.perf_counter() - t0
        self.rarl_timing["generated_tokens"] += sum(len(c) for c in completion_ids)
        if self._rarl_targets is not None and self.model.training:
            if len(completion_ids) != len(self._rarl_targets):
                if not self._rarl_warned_shape:
                    self._rarl_warned_shape = True
                    log.warning(f"rarl: warning: {len(completion_ids)} completions for {len(self._rarl_targets)} prompts "
                                "(a generation backend that groups prompts differently): RMO is skipped")
                return completion_ids, logprobs
            t0 = time.perf_counter()
            completion_ids, logprobs = self._apply_rmo(completion_ids, logprobs)
            self.rarl_timing["reward_rmo_s"] += time.perf_counter() - t0
        return completion_ids, logprobs

    def _rarl_generate(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images):
        """TRL's generation; with the rollout engine, TRL's own ``generate`` call runs on merged weights.

        The engine only wraps the call (merge -> TRL's generate with the engine's generation config ->
        exact unmerge), so TRL's input building, EOS masking and everything downstream stay TRL's.
        """
        args = (prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        engine = self.rarl_engine
        if engine is None or self.rarl_vllm:
            return self.trl_generate_single_turn(*args)
        want = self.rarl_is_correction
        try:
            return self._rarl_engine_call(engine, args, want)
        except Exception as e:
            if not engine.fast_path:
                raise
            engine.disable_fast_path(f"{type(e).__name__}: {e}")
        return self._rarl_engine_call(engine, args, want)

    def _rarl_engine_call(self, engine, args, logprobs: bool):
        """TRL's plain-transformers generation inside the engine; the sampling log-probs when asked for."""
        with engine.generating(self, args[0], logprobs=logprobs) as state, self.trl_use_vllm(False):
            completion_ids, _ = self.trl_generate_single_turn(*args)
        if not logprobs:
            return completion_ids, None
        if state["recorder"] is None:
            raise RuntimeError("the rollout engine recorded no sampling log-probs (generate built no logits processors)")
        return completion_ids, state["recorder"].per_completion(completion_ids)

    def _gather(self, values: list) -> list:
        if self.accelerator.num_processes == 1:
            return list(values)

        return gather_object(values)

    def _apply_rmo(self, completion_ids: list[list[int]], logprobs):
        tok = self.trl_tokenizer
        local_texts = tok.batch_decode(completion_ids, skip_special_tokens=True)
        local_targets = self._rarl_targets
        texts = self._gather(local_texts)
        targets = self._gather(local_targets)
        G = self.num_generations
        cfg = self.rarl_reward_config
        scored = [score(t, tg, cfg) for t, tg in zip(texts, targets, strict=False)]
        before = [b.total for b in scored]
        spreads_before = _group_spreads(before, G)
        stats = {
            **drift_stats([b.values for b in scored], targets),  # the policy's own rollouts, before RMO
            "rarl/reward_before_rmo": float(np.mean(before)),
            "rarl/spread_before_rmo": float(np.mean(spreads_before)),
            "rarl/zero_spread_groups": float(np.mean([s < self.rarl_rmo_config.epsilon for s in spreads_before])),
            "rarl/mutation_rate": 0.0,
            "rarl/mutated_completions": 0.0,
        }
        if self.rarl_rmo_config.enabled and len(texts) % G == 0:
            group_targets = [targets[g * G] for g in range(len(texts) // G)]
            result = apply_rmo_to_batch(texts, G, group_targets, before, self.rarl_rmo_config, self.rmo_rng,
                                        reward_cfg=cfg)
            after = [score(t, tg, cfg).total if m else b
                     for t, tg, m, b in zip(result.completions, targets, result.mutated, before, strict=False)]
            stats["rarl/mutation_rate"] = result.mutation_rate
            stats["rarl/mutated_completions"] = float(np.mean(result.mutated))
            stats["rarl/spread_after_rmo"] = float(np.mean(_group_spreads(after, G)))
            start = self.accelerator.process_index * len(completion_ids)
            eos = self.eos_token_ids[0] if self.eos_token_ids else tok.eos_token_id
            completion_ids = [list(ids) for ids in completion_ids]
            if logprobs is not None:
                logprobs = [list(lp) for lp in logprobs]
            for local_i in range(len(completion_ids)):
                if result.mutated[start + local_i]:
                    new_ids = tok(result.completions[start + local_i], add_special_tokens=False)["input_ids"]
                    completion_ids[local_i] = [*list(new_ids), eos]
                    if logprobs is not None:  # vLLM sampling log-probs: unknown for the mutation (no correction)
                        logprobs[local_i] = [math.nan] * len(completion_ids[local_i])
        else:
            stats["rarl/spread_after_rmo"] = stats["rarl/spread_before_rmo"]
        self._rarl_step_stats.update(stats)
        return completion_ids, logprobs


def grpo_config_kwargs(job_spec, stage, *, world_size: int, use_cpu: bool, bf16: bool,
                       model=None) -> dict[str, Any]:
    """GRPOConfig arguments for one stage (the names follow TRL's); ``model`` as in ``training_args_kwargs``."""
    g = job_spec.grpo
    return dict(
        **training_args_kwargs(job_spec, stage, world_size=world_size, use_cpu=use_cpu, bf16=bf16, model=model),
        num_generations=g.num_generations,
        beta=g.beta,
        temperature=g.temperature,
        top_p=g.top_p,
        max_completion_length=g.max_completion_length,
        scale_rewards=g.scale_rewards,
        loss_type=g.loss_type,
        epsilon=g.epsilon,
        epsilon_high=g.epsilon_high,
        num_iterations=g.num_iterations,
        shuffle_dataset=False,
        remove_unused_columns=False,
    )


def prompts_per_step(job_spec, world_size: int, stage=None) -> int:
    """Distinct queries consumed per optimizer step (global batch / G).

    The spec checked the rule for ``spec.resources``' processes; a local run may have fewer GPUs,
    so the real world size is checked again here.
    """
    try:
        return job_spec.grpo.completions_per_step(world_size, stage) // job_spec.grpo.num_generations
    except ValueError as e:
        raise ConfigError(str(e)) from None
