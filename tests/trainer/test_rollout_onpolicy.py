"""On-policy rollouts in bf16: the engine returns the sampling log-probs and TRL's importance-sampling correction
applies; the snapshot placement and the inductor worker bound (pure functions; their CUDA paths cannot run here)."""

from __future__ import annotations

import math

import pytest
import torch

from rarl_trainer import builtin_models, models
from rarl_trainer.rollout import (
    COMPILE_THREADS_CAP,
    bound_compile_threads,
    compile_threads,
    snapshot_placement,
)

GiB = 1 << 30


class _Lora:
    r, alpha, dropout, target_modules = 8, 16, 0.0, ["all-linear"]


def _model(dtype, delta_rms: float):
    """tiny-lm with LoRA whose merged delta ``scale * B @ A`` has entries of RMS ~``delta_rms``."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(builtin_models.builtin_path(builtin_models.TINY_LM), dtype=dtype)
    model = models.apply_lora(base, _Lora)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
                a.copy_(torch.randn(a.shape, generator=gen) / math.sqrt(a.shape[1]))
                b.copy_(torch.randn(b.shape, generator=gen) * delta_rms
                        / (module.scaling["default"] * math.sqrt(a.shape[0] / a.shape[1])))
    model.train()
    return model


def _trainer(tmp_path, model, **config):
    from datasets import Dataset
    from trl import GRPOConfig

    from rarl_trainer.grpo import RARLGRPOTrainer
    from rarl_trainer.rewards import RewardConfig
    from rarl_trainer.rmo import RMOConfig

    tok = builtin_models.build_tokenizer()
    ds = Dataset.from_dict({"prompt": [[{"role": "user", "content": f"estimate {i}"}] for i in range(8)],
                            "targets": [[float(i % 5 + 1)] for i in range(8)]})

    def reward(prompts, completions, **_):
        return [float(len(str(c)) % 7) for c in completions]

    args = GRPOConfig(**{**dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4,
                                max_completion_length=12, max_steps=1, learning_rate=1e-5, beta=0.0, use_cpu=True,
                                report_to="none", disable_tqdm=True, save_strategy="no", logging_steps=1, seed=0,
                                remove_unused_columns=False, shuffle_dataset=False), **config})
    trainer = RARLGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=ds, processing_class=tok,
                              reward_config=RewardConfig(delta=2.0, target_min=1.0, target_max=5.0),
                              rmo_config=RMOConfig(enabled=False), rollout_engine="merged")
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() in real runs
    return trainer


def test_engine_returns_the_log_probs_of_the_distribution_it_sampled_from(tmp_path):
    """fp32 (merged = PEFT to ~1e-7): each returned log-prob is the sampled token's log-prob under the PEFT
    model's temperature + top-p distribution, recomputed by a full forward; rows and lengths as TRL cut them."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    model = _model(torch.float32, 0.05)  # large adapters: the adapted distribution differs from the base one
    trainer = _trainer(tmp_path, model, temperature=0.7, top_p=0.9)
    tok = builtin_models.build_tokenizer()
    texts = [tok.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False)
             for c in ("estimate 3", "apple pear apple")]
    prompt_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts for _ in range(2)]
    torch.manual_seed(0)
    completion_ids, logprobs = trainer._generate_single_turn(prompt_ids, None, {}, 2)
    assert logprobs is not None, "the merged path returned no sampling log-probs"
    assert [len(lp) for lp in logprobs] == [len(c) for c in completion_ids]
    model.eval()
    worst = 0.0
    with torch.no_grad():
        for p, c, lp in zip(prompt_ids, completion_ids, logprobs, strict=True):
            ids = torch.tensor([p + c])
            logits = model(input_ids=ids).logits[0, len(p) - 1:-1].float()
            scores = TopPLogitsWarper(0.9)(ids, TemperatureLogitsWarper(0.7)(ids, logits))
            want = torch.log_softmax(scores, -1).gather(-1, torch.tensor(c)[:, None]).squeeze(-1)
            assert torch.isfinite(want).all()
            worst = max(worst, (torch.tensor(lp) - want).abs().max().item())
    model.train()
    assert worst < 1e-4, worst


def test_bf16_ratio_is_trls_correction_of_engine_log_probs_and_the_loss_uses_it(tmp_path):
    """bf16, early-training adapter deltas (RMS 3e-6, mostly below half a bf16 ulp of the weights): TRL computes
    its importance-sampling ratio from the engine's sampling log-probs vs the training model's, and the loss is
    multiplied by it (doubling the ratio doubles the loss, zero ratio zeroes it)."""
    model = _model(torch.bfloat16, 3e-6)
    trainer = _trainer(tmp_path, model)
    batch = [trainer.train_dataset[i] for i in range(8)]
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(batch)
    for key in ("sampling_per_token_logps", "old_per_token_logps", "importance_sampling_ratio"):
        assert key in out, key
    mask = out["completion_mask"].float()
    diff = torch.nan_to_num((out["old_per_token_logps"] - out["sampling_per_token_logps"]) * mask, nan=0.0)
    assert diff.abs().max() > 0  # bf16: the sampled policy is not bit-equal to the trained one
    # TRL's default mode (sequence_mask, clip_max 3): exp of the summed log-ratio, masked above the clip
    assert trainer.vllm_importance_sampling_mode == "sequence_mask"
    want = torch.exp(diff.sum(-1, keepdim=True))
    want = want.masked_fill(want > trainer.vllm_importance_sampling_clip_max, 0.0)
    assert torch.allclose(out["importance_sampling_ratio"], want, rtol=1e-6, atol=0)

    loss = trainer.compute_loss(trainer.model, out).item()
    assert loss != 0.0
    doubled = trainer.compute_loss(trainer.model, {**out, "importance_sampling_ratio": 2 * out["importance_sampling_ratio"]})
    zeroed = trainer.compute_loss(trainer.model, {**out, "importance_sampling_ratio": 0 * out["importance_sampling_ratio"]})
    assert doubled.item() == pytest.approx(2 * loss, rel=1e-3)
    assert zeroed.item() == 0.0
    assert trainer.use_vllm is False  # the flag TRL gates the correction on is restored after each span


def test_training_with_the_engine_logs_trls_sampling_metrics(tmp_path):
    model = _model(torch.bfloat16, 3e-6)
    trainer = _trainer(tmp_path, model)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "sampling/importance_sampling_ratio/mean" in h]
    assert logged and all(0.5 < h["sampling/importance_sampling_ratio/mean"] < 2 for h in logged)
    assert "sampling/sampling_logp_difference/max" in logged[0]
    assert trainer.use_vllm is False and trainer.rarl_engine.calls == 1


def test_snapshot_placement_keeps_the_margin_free():
    total = 80 * GiB
    margin = int(0.3 * total)  # 24 GiB on an 80 GiB GPU
    assert snapshot_placement(int(5.5 * GiB), 70 * GiB, total) == "cuda"  # 3B on an H100 after loading
    assert snapshot_placement(int(5.5 * GiB), int(5.5 * GiB) + margin, total) == "cuda"  # exactly fits
    assert snapshot_placement(int(5.5 * GiB), int(5.5 * GiB) + margin - 1, total) == "pinned"
    assert snapshot_placement(13 * GiB, 20 * GiB, 24 * GiB) == "pinned"  # 7B on a 24 GiB card
    # small GPUs: the floor (4 GiB) applies instead of 30 %
    assert snapshot_placement(1 * GiB, 5 * GiB, 8 * GiB) == "cuda"
    assert snapshot_placement(1 * GiB, 5 * GiB - 1, 8 * GiB) == "pinned"
    assert snapshot_placement(0, 0, 8 * GiB) == "pinned"


def test_compile_threads_share_the_node_and_are_capped():
    assert compile_threads(128, 8) == COMPILE_THREADS_CAP == 8  # inductor's default would be 32 per rank
    assert compile_threads(32, 8) == 4
    assert compile_threads(4, 8) == 1
    assert compile_threads(1, 1) == 1
    assert compile_threads(16, 0) == 8  # a bad world size never divides by zero
    assert compile_threads(64, 2, cap=16) == 16


def test_bound_compile_threads_respects_the_user_and_leaves_cache_dirs_alone():
    env = {"LOCAL_WORLD_SIZE": "8", "TORCHINDUCTOR_CACHE_DIR": "/cache/inductor", "TRITON_CACHE_DIR": "/cache/triton"}
    assert bound_compile_threads(env, cpu_count=96) == 8
    assert env["TORCHINDUCTOR_COMPILE_THREADS"] == "8"
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/cache/inductor" and env["TRITON_CACHE_DIR"] == "/cache/triton"
    user = {"TORCHINDUCTOR_COMPILE_THREADS": "3", "LOCAL_WORLD_SIZE": "8"}
    assert bound_compile_threads(user, cpu_count=96) is None and user["TORCHINDUCTOR_COMPILE_THREADS"] == "3"
    single = {}
    assert bound_compile_threads(single, cpu_count=6) == 6 and set(single) == {"TORCHINDUCTOR_COMPILE_THREADS"}


def test_rmo_mutated_completions_carry_no_sampling_log_probs_and_get_ratio_one(tmp_path):
    """A mutated completion was never sampled: its sampling log-probs are NaN and TRL leaves it uncorrected
    (ratio exactly 1); the policy's own completions keep their ratio."""
    from rarl_trainer.rmo import RMOConfig

    model = _model(torch.bfloat16, 3e-6)
    trainer = _trainer(tmp_path, model)
    trainer.rarl_rmo_config = RMOConfig(enabled=True, probability=1.0, epsilon=10.0, value_range=(1.0, 5.0))
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions([trainer.train_dataset[i] for i in range(8)])
    mutated = torch.isnan(out["sampling_per_token_logps"]).any(-1)
    assert mutated.any() and not mutated.all()
    in_mask = out["completion_mask"][mutated].bool()
    assert torch.isnan(out["sampling_per_token_logps"][mutated][in_mask]).all()
    ratio = out["importance_sampling_ratio"][:, 0]
    assert torch.all(ratio[mutated] == 1.0)
    assert (ratio[~mutated] != 1.0).any()
