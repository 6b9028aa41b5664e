"""Rollout engine: vanilla TRL ``GRPOTrainer`` vs the RARL trainer (merged-LoRA rollouts), interleaved.

Reports, for both: median optimizer-step time, generation tokens/s (completion tokens generated /
seconds inside ``_generate_single_turn``) and peak GPU memory (CUDA only), and the ratios
RARL/vanilla. GPU goals: tokens/s >= 4x vanilla, step time <= 0.4x, peak memory <= 1.3x. On CPU
(tiny model, no static cache, no compile) the ratio only shows the merge effect at toy size; it
is not the GPU goal.

Both trainers train the same PEFT model object (LoRA on every linear layer of the language
model, dropout 0) with the same GRPOConfig, data, reward (a constant-time function of the text)
and completions forced to full length (``min_new_tokens`` = max completion length), so each step
generates exactly prompts x G x length tokens. RMO is off (this measures generation). Rounds
alternate which trainer runs first; the first step of every round is dropped (on CUDA a
warm-up round also absorbs ``torch.compile``, which happens once per run: the compiled decode
step is cached on the model object).

CPU, as recorded in RESULTS.md::

    .venv/bin/python bench/bench_rollout.py --device cpu --model tiny --rounds 3 --steps 6

GPU (what ``bench/gpu_check.sh`` should call; one H100, ~10 min including compile)::

    python bench/bench_rollout.py --device cuda --model 3b-shaped --rounds 2 --steps 4 \\
        --generations 8 --prompts 2 --length 256 --image-size 448 --lora-r 16

``--model 3b-shaped`` builds a random Qwen2.5-VL-3B-shaped model from its config (bf16, no hub),
with one ``--image-size`` square image per prompt (448 px -> 256 vision tokens). Gradient
checkpointing is on by default for it (``--no-grad-ckpt`` to disable) for both trainers alike.
Figures are appended to bench/RESULTS.md unless ``--no-record``.

``--policy-check`` (CPU, ~1 min) measures instead what bf16 does to merged rollouts: delta entries the merge
rounds away, merged vs PEFT token log-probs, and TRL's sampling-correction metrics in bf16 training for
merged and for unmerged generation (``policy_check``; the rollout module doc quotes its figures)::

    .venv/bin/python bench/bench_rollout.py --policy-check
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
for sub in ("bench", "trainer", "sdk"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_callback import PrinterCallback, ProgressCallback  # noqa: E402

GOALS = {"tokens_per_s": 4.0, "step_time": 0.4, "peak_memory": 1.3}


class StepTimer(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.times.append(time.perf_counter() - self._t0)


# --------------------------------------------------------------------------- models


def qwen25_vl_3b_config(vocab_size: int):
    """Qwen2.5-VL-3B-Instruct's shapes (text 2048 x 36 layers, vision 1280 x 32 blocks)."""
    from transformers import Qwen2_5_VLConfig

    from rarl_trainer.builtin_models import SPECIAL_TOKENS, build_tokenizer

    tok = build_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
            num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
            tie_word_embeddings=True, bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_model(name: str, device: str, dtype, lora_r: int, image_size: int):
    """(peft model, processor, is_vlm, suppress token ids)."""
    from transformers import GenerationConfig

    from rarl_trainer import builtin_models, models

    class Lora:
        r, alpha, dropout, target_modules = lora_r, 2 * lora_r, 0.0, ["all-linear"]

    if name in ("tiny", "tiny-lm", "tiny-vlm"):
        builtin = builtin_models.TINY_VLM if name == "tiny-vlm" else builtin_models.TINY_LM
        loaded = models.load_model(_model_spec(f"builtin:{builtin}", lora_r), None, device=device)
        return loaded.model, loaded.processor, loaded.is_vlm, loaded.suppress_tokens
    if name != "3b-shaped":
        raise SystemExit(f"unknown --model {name!r} (tiny, tiny-vlm, 3b-shaped)")
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = builtin_models.build_tokenizer()
    config = qwen25_vl_3b_config(vocab_size=151936)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
    suppress = [config.image_token_id, config.video_token_id, config.vision_start_token_id,
                config.vision_end_token_id]
    model.generation_config = GenerationConfig(eos_token_id=config.text_config.eos_token_id,
                                               pad_token_id=config.text_config.pad_token_id,
                                               bos_token_id=config.text_config.bos_token_id,
                                               suppress_tokens=suppress)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=image_size * image_size,
                                               patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = models.no_video_processor_class("qwen2_5_vl")(image_processor=image_processor, tokenizer=tok,
                                                              chat_template=tok.chat_template)
    model = models.apply_lora(model, Lora)
    return model, processor, True, suppress


def _model_spec(base: str, lora_r: int):
    from rarl.api.types import ModelSpec

    return ModelSpec.model_validate({"base": base, "dtype": "float32",
                                     "lora": {"r": lora_r, "alpha": 2 * lora_r, "dropout": 0.0}})


def dataset(n_prompts: int, is_vlm: bool, image_size: int):
    from datasets import Dataset
    from PIL import Image

    rows = {"prompt": [], "targets": []}
    if is_vlm:
        rows["images"] = []
    for i in range(n_prompts):
        content = "Estimate the number of shapes, a number from 1 to 9."
        if is_vlm:
            rows["prompt"].append([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": content}]}])
            rows["images"].append([Image.new("RGB", (image_size, image_size), (37 * i % 255, 90, 160))])
        else:
            rows["prompt"].append([{"role": "user", "content": f"{content} ({i})"}])
        rows["targets"].append([float(i % 9 + 1)])
    return Dataset.from_dict(rows)


def reward(prompts, completions, **_):
    return [float(len(str(c)) % 7) for c in completions]


# --------------------------------------------------------------------------- trainers


def make_trainer(kind: str, model, processor, ds, args):
    from trl import GRPOTrainer

    from rarl_trainer.grpo import RARLGRPOTrainer
    from rarl_trainer.rewards import RewardConfig
    from rarl_trainer.rmo import RMOConfig

    if kind == "rarl":
        trainer = RARLGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=ds,
                                  processing_class=processor,
                                  reward_config=RewardConfig(delta=2.0, target_min=1.0, target_max=9.0),
                                  rmo_config=RMOConfig(enabled=False), rollout_engine="merged")
    else:
        class TimedGRPOTrainer(GRPOTrainer):
            """Vanilla TRL; only times its generation call."""

            def _generate_single_turn(self, prompt_ids, *a, **k):
                t0 = time.perf_counter()
                out = super()._generate_single_turn(prompt_ids, *a, **k)
                self.rarl_timing["generate_s"] += time.perf_counter() - t0
                self.rarl_timing["generated_tokens"] += sum(len(c) for c in out[0])
                return out

        TimedGRPOTrainer.rarl_timing = None
        trainer = TimedGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=ds,
                                   processing_class=processor)
        trainer.rarl_timing = {"generate_s": 0.0, "generated_tokens": 0}
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer


def one_run(kind: str, model, processor, ds, make_args) -> dict:
    trainer = make_trainer(kind, model, processor, ds, make_args())
    timer = StepTimer()
    trainer.add_callback(timer)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    # generation time/tokens of the first step are dropped with it
    first_gen: dict = {}

    class FirstStep(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if state.global_step == 1:
                first_gen.update(trainer.rarl_timing)

    trainer.add_callback(FirstStep())
    torch.manual_seed(0)
    trainer.train()
    t = trainer.rarl_timing
    gen_s = t["generate_s"] - first_gen.get("generate_s", 0.0)
    tokens = t["generated_tokens"] - first_gen.get("generated_tokens", 0)
    out = {
        "step": statistics.median(timer.times[1:]) if len(timer.times) > 1 else timer.times[0],
        "tokens_per_s": tokens / gen_s if gen_s > 0 else float("nan"),
        "gen_share": gen_s / sum(timer.times[1:]) if len(timer.times) > 1 else float("nan"),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
    }
    engine = getattr(trainer, "rarl_engine", None)
    if engine is not None:
        out["fallback"] = engine.fallback_reason
        out["merge_restore_s"] = (engine.stats["merge_s"] + engine.stats["restore_s"]) / max(1, engine.calls)
    trainer.callback_handler.callbacks.clear()  # drop references so the next round starts clean
    return out


# --------------------------------------------------------------------------- bf16 policy check


def _small_adapters(model, delta_rms: float, seed: int = 1):
    """LoRA A ~ N(0, 1/in), B scaled so the merged delta scale * B @ A has entries of RMS ~``delta_rms``."""
    import math

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if not hasattr(module, "lora_A") or "default" not in module.lora_A:
                continue
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            r = a.shape[0]
            a.copy_(torch.randn(a.shape, generator=gen) / math.sqrt(a.shape[1]))
            b.copy_(torch.randn(b.shape, generator=gen) * delta_rms
                    / (module.scaling["default"] * math.sqrt(r / a.shape[1])))


def _token_logps(model, ids, *, merged: bool = False, adapter: bool = True):
    with torch.no_grad():
        if merged:
            model.merge_adapter()
        try:
            if adapter:
                logits = model(input_ids=ids).logits.float()
            else:
                with model.disable_adapter():
                    logits = model(input_ids=ids).logits.float()
        finally:
            if merged:
                model.unmerge_adapter()
    return torch.log_softmax(logits, -1)[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)


def policy_check(deltas=(3e-6, 3e-5), lora_r: int = 16, steps: int = 3) -> str:
    """bf16 vs fp32: what the merge does to small adapter deltas, and what TRL's correction sees.

    1. Weights: share of the delta entries the bf16 merge rounds away (round(W + delta) == W).
    2. Teacher-forced token log-probs (64 random tokens x 8 rows) of the merged model vs the PEFT model.
    3. Training (RARL trainer, ``steps`` optimizer steps, G=4 x 2 prompts, up to 16 completion tokens) in bf16:
       TRL's own metrics of sampling vs training log-probs (``sampling/sampling_logp_difference``) and its
       importance-sampling ratio (sequence_mask, clip 3) for generation on merged weights (the engine) and,
       for comparison, generation on the unmerged PEFT model with the same recorder. Completions are not
       forced to full length here: ``min_new_tokens`` masks EOS, so the sampling distribution differs from the
       policy by design (the correction would rightly see it).
    """
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig

    from rarl_trainer import builtin_models, models

    class Lora:
        r, alpha, dropout, target_modules = lora_r, 2 * lora_r, 0.0, ["all-linear"]

    path = builtin_models.builtin_path(builtin_models.TINY_LM)

    def build(dtype, delta_rms):
        base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        m = models.apply_lora(base, Lora)
        _small_adapters(m, delta_rms)
        m.eval()
        return m

    ids = torch.randint(10, 200, (8, 64), generator=torch.Generator().manual_seed(2))
    lines = ["| delta RMS | dtype | deltas lost in the merge | token log-prob abs diff merged vs PEFT: mean / max "
             "| adapter effect on log-probs (PEFT vs adapters off): mean |", "|---|---|---|---|---|"]
    weight_rms = None
    for rms in deltas:
        for dtype in (torch.float32, torch.bfloat16):
            m = build(dtype, rms)
            lost = total = 0
            got = []
            for module in m.modules():
                if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                    w = module.get_base_layer().weight
                    dw = module.get_delta_weight("default")
                    lost += int(((w + dw).to(w.dtype) == w).sum())
                    total += w.numel()
                    got.append(dw.float().flatten())
                    if weight_rms is None:
                        weight_rms = float(w.float().pow(2).mean().sqrt())
            peft, merged, off = _token_logps(m, ids), _token_logps(m, ids, merged=True), _token_logps(m, ids, adapter=False)
            d = (merged - peft).abs()
            lines.append(f"| {float(torch.cat(got).pow(2).mean().sqrt()):.1e} | {str(dtype).split('.')[-1]} | "
                         f"{100 * lost / total:.1f} % | {d.mean():.1e} / {d.max():.1e} | "
                         f"{(peft - off).abs().mean():.1e} |")

    from datasets import Dataset

    from rarl_trainer.grpo import RARLGRPOTrainer
    from rarl_trainer.rewards import RewardConfig
    from rarl_trainer.rmo import RMOConfig

    tok = builtin_models.build_tokenizer()
    ds = Dataset.from_dict({"prompt": [[{"role": "user", "content": f"estimate {i}"}] for i in range(8)],
                            "targets": [[float(i % 5 + 1)] for i in range(8)]})
    rows = ["| generation | sampling vs training log-prob abs diff: mean / max | IS ratio min / mean / max |",
            "|---|---|---|"]
    for label, merge in (("merged (engine)", True), ("unmerged PEFT", False)):
        model = build(torch.bfloat16, deltas[0])
        model.train()
        with tempfile.TemporaryDirectory() as tmp:
            args = GRPOConfig(output_dir=tmp, per_device_train_batch_size=8, num_generations=4,
                              max_completion_length=16, max_steps=steps, learning_rate=1e-5, beta=0.0, use_cpu=True,
                              report_to="none", disable_tqdm=True, save_strategy="no", logging_steps=1, seed=0,
                              remove_unused_columns=False, shuffle_dataset=False)
            trainer = RARLGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=ds,
                                      processing_class=tok, rmo_config=RMOConfig(enabled=False),
                                      reward_config=RewardConfig(delta=2.0, target_min=1.0, target_max=5.0))
            trainer.rarl_engine.merge = merge
            for cb in (PrinterCallback, ProgressCallback):
                trainer.remove_callback(cb)
            trainer.train()
        logs = [h for h in trainer.state.log_history if "sampling/importance_sampling_ratio/mean" in h]

        def agg(key, fn, logs=logs):
            return fn(h[key] for h in logs)

        rows.append(f"| {label} | {agg('sampling/sampling_logp_difference/mean', statistics.mean):.1e} / "
                    f"{agg('sampling/sampling_logp_difference/max', max):.1e} | "
                    f"{agg('sampling/importance_sampling_ratio/min', min):.4f} / "
                    f"{agg('sampling/importance_sampling_ratio/mean', statistics.mean):.4f} / "
                    f"{agg('sampling/importance_sampling_ratio/max', max):.4f} |")
    head = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, no GPU; torch {torch.__version__}. Model tiny-lm "
            f"(base weight RMS {weight_rms:.3f}), LoRA r={lora_r} on all linear layers, adapters set so the merged "
            "delta has the RMS shown (1e-6..1e-5: early training).")
    tail = (f"Training in bf16, delta RMS {deltas[0]:.0e}, {steps} steps (TRL's metrics, per step: min/mean/max "
            "over steps):")
    return "\n".join([head, "", *lines, "", tail, "", *rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--model", default="tiny", help="tiny (text), tiny-vlm, 3b-shaped (CUDA)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each runs both trainers)")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per trainer and round (first dropped)")
    p.add_argument("--generations", type=int, default=8, help="G")
    p.add_argument("--prompts", type=int, default=2, help="prompts per device batch")
    p.add_argument("--length", type=int, default=None, help="completion tokens (forced); default 32 CPU, 256 CUDA")
    p.add_argument("--image-size", type=int, default=None, help="image side in px (VLMs); default 32 tiny, 448")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--no-grad-ckpt", action="store_true", help="3b-shaped: no gradient checkpointing")
    p.add_argument("--warmup-rounds", type=int, default=None, help="unrecorded rounds first (default: 1 on CUDA)")
    p.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 4 steps")
    p.add_argument("--policy-check", action="store_true",
                   help="instead: bf16 merged vs PEFT log-probs and TRL's sampling correction (CPU, tiny-lm)")
    args = p.parse_args(argv)
    if args.policy_check:
        import warnings

        warnings.filterwarnings("ignore")
        body = policy_check()
        print(body)
        if not args.no_record:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            with open(REPO / "bench" / "RESULTS.md", "a") as fh:
                fh.write(f"\n## bench_rollout.py --policy-check: bf16 merged rollouts vs the trained policy ({stamp})"
                         f"\n\n{body}\n")
        return 0
    if args.quick:
        args.rounds, args.steps = min(args.rounds, 2), min(args.steps, 4)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_rollout: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    if args.model == "3b-shaped" and args.device != "cuda":
        print("bench_rollout: --model 3b-shaped needs --device cuda", file=sys.stderr)
        return 2
    cuda = args.device == "cuda"
    length = args.length or (256 if cuda else 32)
    image_size = args.image_size or (448 if args.model == "3b-shaped" else 32)
    warmup = args.warmup_rounds if args.warmup_rounds is not None else (1 if cuda else 0)
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from trl import GRPOConfig

    dtype = torch.bfloat16 if cuda else torch.float32
    model, processor, is_vlm, suppress = build_model(args.model, "cuda" if cuda else "cpu", dtype, args.lora_r,
                                                     image_size)
    grad_ckpt = args.model == "3b-shaped" and not args.no_grad_ckpt
    batch = args.prompts * args.generations
    steps = args.steps
    ds = dataset(batch * (steps + 1), is_vlm, image_size)
    tmp = tempfile.mkdtemp(prefix="bench-rollout-")
    gen_kwargs = {"min_new_tokens": length}
    if suppress:
        gen_kwargs["suppress_tokens"] = list(suppress)

    def make_args():
        return GRPOConfig(
            output_dir=tmp, per_device_train_batch_size=batch, num_generations=args.generations,
            max_completion_length=length, max_steps=steps, learning_rate=1e-5, beta=0.0, use_cpu=not cuda,
            bf16=cuda, report_to="none", disable_tqdm=True, save_strategy="no", logging_steps=1, seed=0,
            remove_unused_columns=False, shuffle_dataset=False, generation_kwargs=gen_kwargs,
            gradient_checkpointing=grad_ckpt, dataloader_num_workers=0,
        )

    load0 = os.getloadavg()[0]
    rounds = []
    for r in range(warmup + args.rounds):
        order = ["rarl", "vanilla"] if r % 2 == 0 else ["vanilla", "rarl"]
        res = {kind: one_run(kind, model, processor, ds, make_args) for kind in order}
        label = "warm-up" if r < warmup else f"round {r - warmup}"
        print(f"{label}: " + ", ".join(
            f"{k} {v['step'] * 1000:.0f} ms/step {v['tokens_per_s']:.0f} tok/s gen {100 * v['gen_share']:.0f} % "
            f"peak {v['peak_gib']:.2f} GiB" for k, v in res.items()), flush=True)
        if res["rarl"].get("fallback"):
            print(f"  rarl engine fell back: {res['rarl']['fallback']}", flush=True)
        if r >= warmup:
            rounds.append(res)

    def med(kind, key):
        return statistics.median(r[kind][key] for r in rounds)

    ratio = {key: [r["rarl"][key] / r["vanilla"][key] for r in rounds]
             for key in ("tokens_per_s", "step", "peak_gib")}
    mr = {k: statistics.median(v) for k, v in ratio.items()}

    def mmm(values):
        return " / ".join(f"{x:.2f}" for x in (min(values), statistics.median(values), max(values)))

    import peft
    import transformers
    import trl

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               + (torch.cuda.get_device_name(0) if cuda else "no GPU")
               + f", load average {load0:.1f} at start / {os.getloadavg()[0]:.1f} at end"
               + f"; Python {platform.python_version()}, torch {torch.__version__}, transformers "
               f"{transformers.__version__}, trl {trl.__version__}, peft {peft.__version__}")
    fallback = next((r["rarl"]["fallback"] for r in rounds if r["rarl"].get("fallback")), None)
    lines = [
        f"Machine: {machine}.",
        f"Model {args.model} ({'bf16' if cuda else 'fp32'}, LoRA r={args.lora_r} on all linear layers of the LM, "
        f"dropout 0{', gradient checkpointing' if grad_ckpt else ''}), G={args.generations}, {args.prompts} prompts "
        f"per device batch ({batch} completions), {length}-token completions forced (min_new_tokens)"
        + (f", one {image_size}x{image_size} image per prompt" if is_vlm else "")
        + f"; {steps} steps x {args.rounds} interleaved rounds (first step of each dropped"
        + (f", {warmup} warm-up round" if warmup else "") + ").",
        f"RARL engine: merged LoRA{', static cache + torch.compile' if cuda and not fallback else ''}"
        + (f" (fell back: {fallback})" if fallback else "")
        + f"; merge + exact restore {1000 * med('rarl', 'merge_restore_s'):.1f} ms per step.",
        "",
        "| trainer | median step (ms) | generation tok/s | generation share of step | peak GPU memory (GiB) |",
        "|---|---|---|---|---|",
    ]
    for kind, label in (("vanilla", "vanilla GRPOTrainer"), ("rarl", "RARL trainer")):
        lines.append(f"| {label} | {1000 * med(kind, 'step'):.1f} | {med(kind, 'tokens_per_s'):.0f} | "
                     f"{100 * med(kind, 'gen_share'):.0f} % | "
                     + (f"{med(kind, 'peak_gib'):.2f}" if cuda else "n/a") + " |")
    lines += [
        "",
        f"Ratios RARL/vanilla (per round min / median / max): tokens/s {mmm(ratio['tokens_per_s'])}, "
        f"step time {mmm(ratio['step'])}"
        + (f", peak memory {mmm(ratio['peak_gib'])}" if cuda else "") + ".",
    ]
    from _common import goal

    if cuda:
        ok = (goal("rollout", "generate tokens/s RARL/vanilla (GPU)", mr["tokens_per_s"], GOALS["tokens_per_s"], "x",
                   higher_is_better=True, fmt=".2f"),
              goal("rollout", "step time RARL/vanilla (GPU)", mr["step"], GOALS["step_time"], "x", fmt=".2f"),
              goal("rollout", "peak memory RARL/vanilla (GPU)", mr["peak_gib"], GOALS["peak_memory"], "x", fmt=".2f"))
        lines.append(f"GPU goals: tokens/s >= 4x ({'met' if ok[0] else 'NOT met'}), step time <= 0.4x "
                     f"({'met' if ok[1] else 'NOT met'}), peak memory <= 1.3x ({'met' if ok[2] else 'NOT met'}).")
    else:
        # What holds on CPU: merging must never make rollouts slower nor the step longer (median of rounds).
        goal("rollout", f"generate tokens/s RARL/vanilla ({args.model}, CPU, merge only)", mr["tokens_per_s"], 1.0,
             "x", higher_is_better=True, fmt=".2f")
        goal("rollout", f"step time RARL/vanilla ({args.model}, CPU)", mr["step"], 1.05, "x", fmt=".2f")
        lines.append("CPU figure: the ratio on a tiny model (merge only: no static cache or compile on CPU), "
                     "not the GPU goal (tokens/s >= 4x, step <= 0.4x, memory <= 1.3x on a 3B-shaped VLM).")
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(REPO / "bench" / "RESULTS.md", "a") as fh:
            fh.write(f"\n## bench_rollout.py: merged-LoRA rollouts vs vanilla TRL ({args.device}, {args.model}, "
                     f"{stamp})\n\n{body}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
