"""The rollout engine (merged-LoRA generation): same tokens, same distribution, no leaked merge."""

from __future__ import annotations

import pytest
import torch

from rarl_trainer import builtin_models, models
from rarl_trainer.rollout import (
    RolloutEngine,
    RolloutEngineError,
    any_merged,
    generate,
    resolve_engine,
    tuner_layers,
)


class _Lora:
    r, alpha, dropout, target_modules = 4, 8, 0.0, ["all-linear"]


def _peft(name: str, seed: int = 0):
    """A builtin tiny model with LoRA whose B is random (PEFT inits B=0, which would make merging a no-op)."""
    path = builtin_models.builtin_path(name)
    if name == builtin_models.TINY_VLM:
        from transformers import AutoModelForImageTextToText as cls
    else:
        from transformers import AutoModelForCausalLM as cls
    base = cls.from_pretrained(path, dtype=torch.float32)
    model = models.apply_lora(base, _Lora)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


def _text_inputs(batch: int = 3):
    tok = builtin_models.build_tokenizer()
    texts = ["Look at the image and estimate", "apple pear", "<answer>[1, 2"][:batch]
    enc = tok(texts, return_tensors="pt", padding=True)
    return dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])


def _vlm_inputs():
    from PIL import Image

    from rarl_trainer.models import load_processor

    path = builtin_models.builtin_path(builtin_models.TINY_VLM)
    from transformers import AutoConfig

    processor, _ = load_processor(path, AutoConfig.from_pretrained(path))
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "estimate the number"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    imgs = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    enc = processor(text=[text, text], images=imgs, return_tensors="pt", padding=True)
    return dict(enc)


def _state(model):
    return {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}


def _assert_same_state(model, before):
    after = dict(model.named_parameters())
    assert set(after) == set(before)
    for n, (t, rg) in before.items():
        assert torch.equal(after[n].detach(), t), n
        assert after[n].requires_grad == rg, n
    assert not any_merged(model)


def _optimizer_step(model, inputs):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    model.train()
    out = model(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    opt.step()
    opt.zero_grad()


def _greedy(model, inputs, engine=None, **kw):
    cfg = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False, **kw)
    if engine is None:
        with torch.no_grad():
            model.eval()
            out = model.generate(**inputs, **cfg)
            model.train()
            return out
    from transformers import GenerationConfig

    base = GenerationConfig(**{**model.generation_config.to_dict(), **cfg})
    return generate(model, engine, generation_config=base, **inputs)


@pytest.mark.parametrize("name", [builtin_models.TINY_LM, builtin_models.TINY_VLM])
def test_greedy_tokens_match_peft_generate_before_and_after_a_step(name):
    model = _peft(name)
    inputs = _vlm_inputs() if name == builtin_models.TINY_VLM else _text_inputs()
    kw = {"suppress_tokens": model.generation_config.suppress_tokens} if name == builtin_models.TINY_VLM else {}
    engine = RolloutEngine(model)
    assert engine.merge and len(tuner_layers(model)) > 0
    for _ in range(2):  # before, then after an optimizer step (the merge follows the new adapter weights)
        before = _state(model)
        reference = _greedy(model, inputs, **kw)
        fast = _greedy(model, inputs, engine, **kw)
        assert torch.equal(fast, reference)
        _assert_same_state(model, before)
        _optimizer_step(model, {k: v for k, v in inputs.items()})
    # the step changed the adapters, so the rollouts changed too: the merge is not stale
    assert engine.calls == 2


@pytest.mark.parametrize("name", [builtin_models.TINY_LM, builtin_models.TINY_VLM])
def test_static_cache_path_gives_the_same_greedy_tokens(name):
    """The GPU path's static KV cache (bucketed size, VLM rope deltas, left padding), run on CPU without
    ``torch.compile`` (which only CUDA uses): same tokens as the PEFT model, and a static cache really was used."""
    from transformers import GenerationConfig
    from transformers.cache_utils import StaticCache

    model = _peft(name)
    inputs = _vlm_inputs() if name == builtin_models.TINY_VLM else _text_inputs()
    kw = {"suppress_tokens": model.generation_config.suppress_tokens} if name == builtin_models.TINY_VLM else {}
    engine = RolloutEngine(model)
    engine.static_cache, engine.compile = True, False  # forced: the engine only chooses it on CUDA
    before = _state(model)
    reference = _greedy(model, inputs, **kw)
    assert torch.equal(_greedy(model, inputs, engine, **kw), reference)
    cfg = GenerationConfig(**{**model.generation_config.to_dict(), "max_new_tokens": 12, "min_new_tokens": 12,
                              "do_sample": False, "return_dict_in_generate": True, **kw})
    out = generate(model, engine, generation_config=cfg, **inputs)
    assert isinstance(out["cache"], StaticCache) and torch.equal(out["sequences"], reference)
    _assert_same_state(model, before)


def test_merge_changes_outputs_and_engine_is_needed():
    """Sanity: the random adapters matter (otherwise the tests above would prove nothing)."""
    model = _peft(builtin_models.TINY_LM)
    inputs = _text_inputs()
    with torch.no_grad(), model.disable_adapter():
        model.eval()
        plain = model(**inputs).logits
    with torch.no_grad():
        adapted = model(**inputs).logits
    assert (plain - adapted).abs().max() > 1e-2


def test_merged_log_probs_equal_unmerged_and_sampling_matches_under_a_seed():
    """The exact criterion: per-token log-probs of the merged model = the PEFT model's, to 1e-5."""
    from transformers import GenerationConfig

    model = _peft(builtin_models.TINY_LM, seed=3)
    inputs = _text_inputs()
    cfg = GenerationConfig(**{**model.generation_config.to_dict(), "max_new_tokens": 16, "min_new_tokens": 16,
                              "do_sample": True, "temperature": 0.9, "top_p": 0.95})
    engine = RolloutEngine(model)
    torch.manual_seed(123)
    fast = generate(model, engine, generation_config=cfg, **inputs)
    torch.manual_seed(123)
    with torch.no_grad():
        model.eval()
        reference = model.generate(**inputs, generation_config=cfg)
        model.train()
    assert torch.equal(fast, reference)

    mask = torch.cat([inputs["attention_mask"], torch.ones_like(fast[:, inputs["input_ids"].shape[1]:])], dim=1)
    model.eval()
    with torch.no_grad():
        unmerged = torch.log_softmax(model(input_ids=fast, attention_mask=mask).logits, -1)
        with engine.merged():
            assert any_merged(model)
            merged = torch.log_softmax(model(input_ids=fast, attention_mask=mask).logits, -1)
    model.train()
    assert not any_merged(model)
    tok_lp = lambda lp: lp[:, :-1].gather(-1, fast[:, 1:, None]).squeeze(-1)  # noqa: E731
    assert (tok_lp(merged) - tok_lp(unmerged)).abs().max().item() < 1e-5
    assert (merged - unmerged).abs().max().item() < 1e-4  # the whole distribution, not just the sampled tokens


def _sample(model, engine, prompt, n: int, seed: int, *, base_model: bool = False):
    """``n`` two-token samples of one prompt (temperature 0.1, top-p 0.9: ~180 tokens in the support)."""
    from transformers import GenerationConfig

    cfg = GenerationConfig(**{**model.generation_config.to_dict(), "max_new_tokens": 2, "min_new_tokens": 2,
                              "do_sample": True, "temperature": 0.1, "top_p": 0.9, "top_k": 0})
    batch = {k: v.expand(n, -1) for k, v in prompt.items()}
    torch.manual_seed(seed)
    if engine is not None:
        out = generate(model, engine, generation_config=cfg, **batch)
    else:
        model.eval()
        with torch.no_grad():
            if base_model:
                with model.disable_adapter():
                    out = model.generate(**batch, generation_config=cfg)
            else:
                out = model.generate(**batch, generation_config=cfg)
        model.train()
    return out[:, prompt["input_ids"].shape[1]:]


def _expected_first_token(model, prompt):
    """The PEFT model's own next-token distribution after temperature 0.1 and top-p 0.9 (transformers' warpers)."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    model.eval()
    with torch.no_grad():
        scores = model(**prompt).logits[:, -1].float()
    model.train()
    scores = TopPLogitsWarper(0.9)(prompt["input_ids"], TemperatureLogitsWarper(0.1)(prompt["input_ids"], scores))
    return torch.softmax(scores, -1)[0]


def _chi2_fit(tokens: torch.Tensor, expected: torch.Tensor) -> float:
    """p-value of a chi-square goodness of fit; categories expected < 5 times are pooled into one.

    A token outside the expected support (cut by top-p) is impossible under ``expected``: p = 0.
    """
    from scipy import stats

    n = len(tokens)
    counts = torch.bincount(tokens, minlength=len(expected)).double()
    if counts[expected == 0].sum() > 0:
        return 0.0
    exp = expected.double() * n
    big = exp >= 5
    obs = torch.cat([counts[big], counts[~big].sum()[None]])
    want = torch.cat([exp[big], exp[~big].sum()[None]])
    return float(stats.chisquare(obs.numpy(), want.numpy() * obs.sum().item() / want.sum().item()).pvalue)


def _chi2_same(a: torch.Tensor, b: torch.Tensor) -> float:
    """p-value of a two-sample chi-square test of homogeneity (tokens seen < 10 times in all are pooled)."""
    import numpy as np
    from scipy import stats

    size = int(max(a.max(), b.max())) + 1
    ca, cb = torch.bincount(a, minlength=size), torch.bincount(b, minlength=size)
    big = (ca + cb) >= 10
    table = np.array([[*ca[big].tolist(), int(ca[~big].sum())], [*cb[big].tolist(), int(cb[~big].sum())]])
    return float(stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue)


def test_sampled_token_distribution_matches_the_peft_model():
    """Statistical check of sampling (the criterion that also holds where kernels differ, e.g. a compiled GPU
    path): the engine's samples, drawn with their own seed, fit the PEFT model's temperature/top-p distribution,
    and its second tokens match ``model.generate`` on the PEFT model drawn with another seed. Seeds are fixed, so
    the p-values are the same on every run (not flaky); the negative control (adapters disabled, a distribution
    at total-variation distance ~0.8) shows the same tests reject a wrong sampler."""
    model = _peft(builtin_models.TINY_LM, seed=5)
    prompt = _text_inputs(1)
    n = 3000
    engine = RolloutEngine(model)
    fast = _sample(model, engine, prompt, n, seed=11)
    reference = _sample(model, None, prompt, n, seed=12)
    wrong = _sample(model, None, prompt, n, seed=13, base_model=True)
    assert not any_merged(model)

    expected = _expected_first_token(model, prompt)
    assert 50 < int((expected > 0).sum()) < 400  # a spread-out distribution, not a near-greedy one
    p_fast, p_ref = _chi2_fit(fast[:, 0], expected), _chi2_fit(reference[:, 0], expected)
    p_second = _chi2_same(fast[:, 1], reference[:, 1])
    print(f"p-values: engine fit {p_fast:.3g}, reference fit {p_ref:.3g}, second token {p_second:.3g}")
    assert p_fast > 1e-3
    assert p_ref > 1e-3  # the test itself accepts the reference sampler
    assert p_second > 1e-3
    assert not torch.equal(fast, reference)  # different seeds: a statistical comparison, not a replay

    # negative control: the base model's samples are rejected by both tests
    p_wrong, p_wrong_second = _chi2_fit(wrong[:, 0], expected), _chi2_same(fast[:, 1], wrong[:, 1])
    print(f"negative control p-values: first token {p_wrong:.3g}, second token {p_wrong_second:.3g}")
    assert p_wrong < 1e-6
    assert p_wrong_second < 1e-6


def test_engine_restores_exactly_even_when_generation_fails():
    model = _peft(builtin_models.TINY_LM)
    before = _state(model)
    engine = RolloutEngine(model)
    with pytest.raises(RuntimeError), engine.merged():
        assert not model.training
        raise RuntimeError("boom")
    assert model.training
    _assert_same_state(model, before)


def test_full_fine_tuning_generates_on_training_weights():
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(builtin_models.builtin_path(builtin_models.TINY_LM), dtype=torch.float32)
    model.train()
    engine = RolloutEngine(model)
    assert not engine.merge
    before = _state(model)
    inputs = _text_inputs()
    assert torch.equal(_greedy(model, inputs, engine), _greedy(model, inputs))
    _assert_same_state(model, before)
    assert model.training


def test_cpu_never_uses_static_cache_or_compile():
    model = _peft(builtin_models.TINY_LM)
    engine = RolloutEngine(model, static_cache=True, compile=True)
    if not torch.cuda.is_available():
        assert not engine.static_cache and not engine.compile
    from transformers import GenerationConfig

    cfg = engine.generation_config(GenerationConfig(max_new_tokens=8, temperature=0.7, top_p=0.9), 10)
    assert cfg.temperature == 0.7 and cfg.top_p == 0.9 and cfg.max_new_tokens == 8


def test_static_cache_config_is_bucketed():
    model = _peft(builtin_models.TINY_LM)
    engine = RolloutEngine(model)
    engine.static_cache = engine.compile = True  # what CUDA would choose; only the config is inspected here
    from transformers import GenerationConfig

    a = engine.generation_config(GenerationConfig(max_new_tokens=64, suppress_tokens=[5]), 100)
    b = engine.generation_config(GenerationConfig(max_new_tokens=64, suppress_tokens=[5]), 250)
    assert a.cache_implementation == "static" and a.max_cache_len == b.max_cache_len == 256 + 64
    assert a.compile_config is b.compile_config and not a.disable_compile
    assert a.suppress_tokens == [5]

    fixed = RolloutEngine(model, max_prompt_length=300)  # grpo.maxPromptLength: one cache size for every step
    fixed.static_cache = fixed.compile = True
    sizes = {fixed.generation_config(GenerationConfig(max_new_tokens=64), n).max_cache_len for n in (7, 100, 300)}
    assert sizes == {300 + 64}
    # a prompt over the limit (vision tokens are never cut) falls back to the bucket rule
    assert fixed.generation_config(GenerationConfig(max_new_tokens=64), 301).max_cache_len == 512 + 64


def test_resolve_engine():
    assert resolve_engine("auto") == "merged"
    assert resolve_engine("trl") == "trl"
    assert resolve_engine("vllm", cuda=True, vllm=True) == "vllm"
    with pytest.raises(RolloutEngineError, match="vLLM is not installed"):
        resolve_engine("vllm", cuda=True, vllm=False)
    with pytest.raises(RolloutEngineError, match="needs a GPU"):
        resolve_engine("vllm", cuda=False, vllm=True)
    # a sharded model (model.sharding: fsdp): TRL's generate gathers one layer at a time; merging needs them all
    assert resolve_engine("auto", sharded=True) == "trl"
    assert resolve_engine("trl", sharded=True) == "trl"
    with pytest.raises(RolloutEngineError, match="sharded model"):
        resolve_engine("merged", sharded=True)


def _trainer(engine: str, tmp_path, steps: int = 2, beta: float = 0.0, **config):
    from datasets import Dataset
    from trl import GRPOConfig

    from rarl_trainer.grpo import RARLGRPOTrainer
    from rarl_trainer.rewards import RewardConfig
    from rarl_trainer.rmo import RMOConfig

    model = _peft(builtin_models.TINY_LM)
    tok = builtin_models.build_tokenizer()
    ds = Dataset.from_dict({"prompt": [[{"role": "user", "content": f"estimate {i}"}] for i in range(8)],
                            "targets": [[float(i % 5 + 1)] for i in range(8)]})

    def reward(prompts, completions, **_):
        return [float(len(str(c))) for c in completions]

    args = GRPOConfig(**{**dict(output_dir=str(tmp_path / engine), per_device_train_batch_size=8, num_generations=4,
                                max_completion_length=8, max_steps=steps, learning_rate=1e-2, beta=beta, use_cpu=True,
                                report_to="none", disable_tqdm=True, save_strategy="no", logging_steps=1, seed=0,
                                remove_unused_columns=False, shuffle_dataset=False), **config})
    return RARLGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=ds, processing_class=tok,
                           reward_config=RewardConfig(delta=2.0, target_min=1.0, target_max=5.0), rmo_config=RMOConfig(enabled=False),
                           rollout_engine=engine)


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_trainer_generates_merged_and_computes_the_loss_on_the_training_model(tmp_path, beta):
    trainer = _trainer("merged", tmp_path, beta=beta)
    engine = trainer.rarl_engine
    assert engine is not None
    model = trainer.model
    seen = {"gen_merged": [], "logp_merged": [], "logp_training": []}
    orig_generate = type(model).generate

    def spy_generate(self, *a, **k):
        seen["gen_merged"].append(any_merged(self))
        return orig_generate(self, *a, **k)

    orig_logps = trainer._get_per_token_logps_and_entropies

    def spy_logps(m, *a, **k):
        seen["logp_merged"].append(any_merged(trainer.model))
        seen["logp_training"].append(m.training or not torch.is_grad_enabled())
        return orig_logps(m, *a, **k)

    trainer._get_per_token_logps_and_entropies = spy_logps
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    type(model).generate = spy_generate
    try:
        trainer.train()
    finally:
        type(model).generate = orig_generate
    assert engine.calls == 2 and seen["gen_merged"] == [True, True]
    assert seen["logp_merged"] and not any(seen["logp_merged"])  # loss log-probs: unmerged PEFT model
    assert all(seen["logp_training"])
    assert not any_merged(model) and model.training
    # gradients reached the adapters through the unmerged model
    assert any(not torch.equal(p.detach(), lora_b[n]) for n, p in model.named_parameters() if n in lora_b)
    assert trainer.rarl_timing["generated_tokens"] > 0


def test_one_generation_call_per_optimizer_step_covers_all_prompts_and_generations(tmp_path):
    """With gradient accumulation (2 micro-batches of 1 prompt x 4 generations), every optimizer step's rollouts
    come from one batched ``generate`` call of 2 prompts x 4 generations, on merged weights."""
    trainer = _trainer("merged", tmp_path, steps=2, per_device_train_batch_size=4, gradient_accumulation_steps=2)
    model = trainer.model
    calls: list[tuple[int, bool]] = []
    orig_generate = type(model).generate

    def spy_generate(self, *a, **k):
        calls.append((int(k["input_ids"].shape[0]), any_merged(self)))
        return orig_generate(self, *a, **k)

    type(model).generate = spy_generate
    try:
        trainer.train()
    finally:
        type(model).generate = orig_generate
    assert trainer.state.global_step == 2
    assert calls == [(8, True), (8, True)]
    assert trainer.rarl_engine.calls == 2


def test_a_failing_fast_path_falls_back_once_and_training_goes_on(tmp_path, capsys):
    """If the static-cache/compiled call raises (a model transformers cannot compile, a CUDA graph error), the
    step is regenerated on merged weights with a dynamic cache, with one warning, and later steps skip it."""
    trainer = _trainer("merged", tmp_path, steps=2)
    engine = trainer.rarl_engine
    engine.static_cache = engine.compile = True  # as on CUDA
    real_config = engine.generation_config
    attempts = []

    def broken(base, max_prompt_len):
        cfg = real_config(base, max_prompt_len)
        attempts.append(engine.fast_path)
        if engine.fast_path:
            cfg.cache_implementation = "no-such-cache"  # transformers raises ValueError inside generate
        return cfg

    engine.generation_config = broken
    trainer.train()
    assert trainer.state.global_step == 2
    assert engine.fallback_reason and "no-such-cache" in engine.fallback_reason
    assert not engine.fast_path and attempts == [True, False, False]
    assert capsys.readouterr().err.count("static-cache/compiled rollouts failed") == 1
    assert not any_merged(trainer.model) and trainer.rarl_timing["generated_tokens"] > 0


def test_grpo_trainer_trl_engine_is_plain_trl(tmp_path):
    trainer = _trainer("trl", tmp_path, steps=1)
    assert trainer.rarl_engine is None
    trainer.train()
    assert trainer.rarl_timing["generated_tokens"] > 0


@pytest.mark.slow
def test_job_with_vllm_engine_but_no_vllm_exits_2(tmp_path):
    from rarl_trainer.rollout import vllm_available
    from tests.trainer.conftest import job_doc, run_trainer, write_job

    if vllm_available() and torch.cuda.is_available():
        pytest.skip("vLLM and a GPU are available here")
    proc = run_trainer(write_job(tmp_path, job_doc(tmp_path, rolloutEngine="vllm")), tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "rolloutEngine" in proc.stderr


@pytest.mark.parametrize("base,modality", [("builtin:tiny-lm", "text"), ("builtin:tiny-qwen2.5-vl", "image")])
def test_eval_answers_on_merged_weights_equal_the_peft_model(tmp_path, base, modality):
    """The trainer's evaluation generates on merged weights: same greedy answers, model left untouched."""
    from rarl.api.validation import parse_job
    from rarl_trainer.config import DistInfo
    from rarl_trainer.evaluation import generate_answers
    from rarl_trainer.loop import Run
    from tests.trainer.conftest import job_doc

    run = Run(parse_job(job_doc(tmp_path, base=base, modality=modality)), tmp_path / "run", resume="never",
              dist=DistInfo()).set_up()
    model = run.loaded.model
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.train()
    before = _state(model)
    table = run.evaluator.table
    indices = list(range(min(6, len(table.queries))))
    fast = generate_answers(run.loaded, table, indices, 12, batch_size=4)
    _assert_same_state(model, before)
    assert model.training
    reference = generate_answers(run.loaded, table, indices, 12, batch_size=4, merged=False)
    assert fast == reference and len(fast) == len(indices)
    with model.disable_adapter():  # the adapters matter for these answers (otherwise this proves nothing)
        plain = generate_answers(run.loaded, table, indices, 12, batch_size=4, merged=False)
    assert plain != reference
