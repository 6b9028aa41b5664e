"""GPU check (Python part of bench/gpu_check.sh): RARL trainer vs vanilla TRL on a Qwen2.5-VL-3B-shaped model.

    python3 bench/gpu_check.py [--tiny] [--steps 3] [--rounds 2] [--budget-s 330] [--out DIR]

Builds a Qwen2.5-VL-3B-shaped model with seeded random weights (text: hidden 2048, 36 layers,
16 heads / 2 KV heads, MLP 11008, vocab 151936, tied embeddings; vision: depth 32, hidden 1280,
out 2048), bf16, on the GPU, saves it to a local folder (tokenizer: rarl's tiny BPE padded with
filler tokens to the full vocabulary) and trains it through the RARL trainer's public pieces
(bench_trainer.py's build_rarl/build_vanilla): LoRA r=16 on every linear layer of the language
model, G = 8 generations per query, 2 queries per step (batch 16), one 448x448 synthetic image
per prompt (256 image tokens), 256-token completions forced to full length (min_new_tokens = max),
gradient checkpointing on for both (``--no-grad-ckpt`` to turn it off).
The RARL trainer and vanilla TRL GRPOTrainer run interleaved in this process (vanilla, RARL, then
RARL, vanilla while the time budget allows; the first run of each always happens, vanilla first so
that RARL's decode-step compile cannot use up the budget). Each run's model is freed before the next
(checked through a weak reference) and the peak-memory counter is reset after that, so a run's peak
is its own. Printed: median step time of each (the first
step of each run dropped), generated tokens/s inside generate() and end to end, peak GPU memory
(torch.cuda.max_memory_allocated, reset before each run), and the RARL/vanilla ratios against the
fast-rollout goals (generate tokens/s >= 4x, step time <= 0.4x, peak memory <= 1.3x; GPU only) and
the trainer-overhead bound (step time <= 1.05x). A JSON copy goes to
--out (gpu_check.json).

``--tiny`` runs the same code path on CPU with the same builder shrunk to tiny layers and a
4096-token padded vocabulary (float32; 16-token completions, 112 px images, 2 steps): a dry run that everything up to the device-specific parts works.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for sub in ("bench", "sdk", "trainer"):  # runnable without installing the repo (the device image)
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))

VOCAB_3B = 151936


def padded_tokenizer(vocab_size: int):
    """rarl's tiny BPE tokenizer with filler tokens appended to the BPE vocabulary up to vocab_size ids."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from rarl_trainer.builtin_models import build_tokenizer

    tok = build_tokenizer()
    data = json.loads(tok.backend_tokenizer.to_str())
    vocab = data["model"]["vocab"]
    used = set(vocab.values()) | {t["id"] for t in data["added_tokens"]}
    next_id = 0
    while len(used) < vocab_size:
        while next_id in used:
            next_id += 1
        vocab[f"filler{next_id}"] = next_id
        used.add(next_id)
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)),
                                   eos_token=tok.eos_token, pad_token=tok.pad_token, padding_side="left",
                                   chat_template=tok.chat_template, model_max_length=32768)
    return fast


SHAPE_3B = dict(vocab=VOCAB_3B, hidden=2048, mlp=11008, layers=36, heads=16, kv=2, mrope=[16, 24, 24], v_depth=32, v_hidden=1280,
                v_mlp=3420, v_heads=16, v_full=[7, 15, 23, 31], dtype="bfloat16")
# --tiny: the same builder (padded tokenizer) with a 4096-token vocabulary and small layers, float32 on CPU
SHAPE_TINY = dict(vocab=4096, hidden=64, mlp=128, layers=2, heads=4, kv=2, mrope=[2, 3, 3], v_depth=2, v_hidden=32, v_mlp=64,
                  v_heads=2, v_full=[1], dtype="float32")


def build_3b_shaped(dest: Path, device: str, image_px: int, shape: dict = SHAPE_3B) -> Path:
    """A Qwen2.5-VL-3B-shaped model (random weights, bf16) + processor written to dest."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from rarl_trainer.builtin_models import SPECIAL_TOKENS, VISION_TOKENS

    tok = padded_tokenizer(shape["vocab"])
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    mrope = shape["mrope"]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["mlp"],
            num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
            num_key_value_heads=shape["kv"], max_position_embeddings=32768,
            rope_scaling={"type": "mrope", "mrope_section": mrope},
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
            tie_word_embeddings=True, bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=shape["v_depth"], hidden_size=shape["v_hidden"], intermediate_size=shape["v_mlp"],
            num_heads=shape["v_heads"], out_hidden_size=shape["hidden"], patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2, window_size=112, fullatt_block_indexes=shape["v_full"],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=getattr(torch, shape["dtype"]))
    model.generation_config = GenerationConfig(
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|im_start|>"],
        suppress_tokens=[ids[t] for t in VISION_TOKENS],
    )
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(dest)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=image_px * image_px, patch_size=14, merge_size=2,
                             temporal_patch_size=2).save_pretrained(dest)
    tok.save_pretrained(dest)
    print(f"built a Qwen2.5-VL-3B-shaped model ({'full' if shape is SHAPE_3B else 'tiny'} layers): "
          f"{n_params / 1e9:.3f} B parameters, {shape['dtype']} -> {dest}", flush=True)
    return dest


def job(tmp: Path, base: str, steps: int, group: int, prompts: int, length: int, image_px: int, dtype: str,
        lora_r: int, grad_ckpt: bool):
    from rarl.api.validation import parse_job

    return parse_job({
        "apiVersion": "rarl.dev/v1alpha1", "kind": "RARLJob", "metadata": {"name": "gpu-check"},
        "spec": {
            "model": {"base": base, "dtype": dtype, "gradientCheckpointing": grad_ckpt,
                      "lora": {"r": lora_r, "alpha": 2 * lora_r, "targetModules": ["all-linear"]}},
            "dataset": {"format": "synthetic", "modality": "image",
                        "synthetic": {"trainSize": 256, "evalSize": 8, "seed": 0, "imageSize": image_px},
                        "target": {"min": 1, "max": 9, "unit": "shapes", "precision": 1}},
            "stages": [{"name": "bench", "steps": steps, "listSizes": [1],
                        "rmo": {"epsilon": 0.01, "probability": 0.2, "mutations": 2}}],
            "grpo": {"numGenerations": group, "perDeviceBatchSize": group * prompts, "learningRate": 1e-5,
                     "beta": 0.0, "maxCompletionLength": length, "seed": 0, "evalListSizes": [1],
                     "evalQueries": 1},
            "checkpoint": {"uri": str(tmp / "ckpt"), "everySteps": 1_000_000},
            "output": {"uri": str(tmp / "out")},
        },
    })


class GenTimer:
    """Wraps a model's generate(): seconds inside it and completion tokens produced."""

    def __init__(self, model) -> None:
        self.seconds = 0.0
        self.tokens = 0
        self.lengths: list[int] = []
        self._orig = model.generate
        model.generate = self

    def __call__(self, *args, **kwargs):
        import torch

        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        sync()
        t0 = time.perf_counter()
        out = self._orig(*args, **kwargs)
        sync()
        self.seconds += time.perf_counter() - t0
        prompt = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
        seqs = out if isinstance(out, torch.Tensor) else out.sequences
        self.tokens += seqs.shape[0] * (seqs.shape[1] - prompt)
        self.lengths.append(seqs.shape[1] - prompt)
        return out


def force_full_length(trainer, length: int) -> None:
    """min_new_tokens = max_new_tokens: every completion is generated to full length (EOS masked)."""
    trainer.generation_config.min_new_tokens = length
    if isinstance(getattr(trainer, "generation_kwargs", None), dict):
        trainer.generation_kwargs["min_new_tokens"] = length


def one_run(kind: str, tmp: Path, spec_args: dict, length: int) -> dict:
    import torch
    from bench_trainer import StepTimer, build_rarl, build_vanilla, rarl_args_and_data, rarl_callback_seconds

    from rarl.progress import FileProgressReporter
    from rarl_trainer.config import DistInfo, stage_plan
    from rarl_trainer.loop import Run

    cuda = torch.cuda.is_available()
    t_start = time.perf_counter()
    rjob = job(tmp, **spec_args)
    training = Run(rjob, tmp / "run", resume="never", dist=DistInfo(),
                   reporter=FileProgressReporter(tmp / "run" / "progress.json")).set_up()
    plan = stage_plan(rjob.spec)[0]
    # vanilla: the RARL trainer builds the shared args and data, then it and its model are freed (checked)
    trainer = build_vanilla(training, plan, *rarl_args_and_data(training, plan)) if kind == "vanilla" else build_rarl(training, plan)
    force_full_length(trainer, length)
    gen = GenTimer(trainer.model)
    timer = StepTimer()
    trainer.add_callback(timer)
    torch.manual_seed(0)
    load_s = time.perf_counter() - t_start
    if cuda:  # the peak of this run alone: its model and training, nothing of an earlier run
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    if training.session.uploader is not None:
        training.session.uploader.wait()
    times = timer.times[1:] or timer.times
    steps = len(timer.times)
    out = {
        "kind": kind, "load_s": load_s, "step_times_s": timer.times, "median_step_s": statistics.median(times),
        "gen_tokens": gen.tokens, "gen_seconds": gen.seconds, "completion_lengths": gen.lengths,
        "gen_tokens_per_s": gen.tokens / gen.seconds if gen.seconds else float("nan"),
        "end_to_end_tokens_per_s": (gen.tokens / steps) / statistics.median(times),
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
    }
    if kind == "rarl":
        out["overhead_s"] = (trainer.rarl_timing["reward_rmo_s"] + trainer.rarl_reward_terms.seconds
                             + rarl_callback_seconds(trainer))
        out["overhead_share"] = out["overhead_s"] / sum(timer.times)
    print(f"{kind}: load {load_s:.1f} s, steps {', '.join(f'{t:.2f}' for t in timer.times)} s, completion lengths "
          f"{sorted(set(gen.lengths))}, generate {out['gen_tokens_per_s']:.0f} tok/s, peak "
          f"{out['peak_gpu_mem_gib']:.1f} GiB", flush=True)
    import gc
    import weakref

    model = weakref.ref(trainer.model)
    del trainer, training, gen
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    if model() is not None:
        raise RuntimeError(f"the {kind} run's model is still referenced after the run: the next run would "
                           "measure its memory too")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="CPU dry run on the tiny builtin VLM")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default 3, --tiny 2; first dropped)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds (RARL+vanilla each; order alternates)")
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=2, help="queries per step (batch = prompts x generations)")
    ap.add_argument("--length", type=int, default=None, help="completion tokens (default 256, --tiny 16)")
    ap.add_argument("--image", type=int, default=None, help="image side in px (default 448, --tiny 112)")
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--no-grad-ckpt", action="store_true", help="no gradient checkpointing (on by default)")
    ap.add_argument("--budget-s", type=float, default=330, help="start no new run after this many seconds")
    ap.add_argument("--out", default=os.environ.get("OUT") or ".", help="folder for gpu_check.json")
    args = ap.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    t0 = time.perf_counter()
    steps = args.steps or (2 if args.tiny else 3)
    length = args.length or (16 if args.tiny else 256)
    image = args.image or (112 if args.tiny else 448)
    cuda = torch.cuda.is_available()
    if not args.tiny and not cuda:
        raise SystemExit("no CUDA device: use --tiny for the CPU dry run")
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(0) if cuda else 'cpu'}", flush=True)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        shape = SHAPE_TINY if args.tiny else SHAPE_3B
        base = str(build_3b_shaped(tmp / "model", "cuda" if cuda else "cpu", image, shape))
        dtype = shape["dtype"]
        print(f"model ready after {time.perf_counter() - t0:.0f} s", flush=True)
        spec_args = dict(base=base, steps=steps, group=args.generations, prompts=args.prompts, length=length,
                         image_px=image, dtype=dtype, lora_r=args.lora_r, grad_ckpt=not args.no_grad_ckpt)
        # Vanilla first: RARL's first generation compiles the decode step (minutes for a 3B model on a cold
        # cache), and a budget spent on it must not leave the comparison without its vanilla half. Each
        # trainer's first run always happens; the budget only cuts the repeat round.
        for r in range(args.rounds):
            for kind in (["vanilla", "rarl"] if r % 2 == 0 else ["rarl", "vanilla"]):
                elapsed = time.perf_counter() - t0
                if any(x["kind"] == kind for x in results) and elapsed > args.budget_s:
                    print(f"time budget: {elapsed:.0f} s > {args.budget_s:.0f} s, skipping {kind} round {r}")
                    continue
                results.append(one_run(kind, tmp / f"r{r}-{kind}", spec_args, length) | {"round": r})
    rarl = [x for x in results if x["kind"] == "rarl"]
    van = [x for x in results if x["kind"] == "vanilla"]
    if not rarl or not van:
        raise SystemExit("not both trainers ran")
    med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
    summary = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
        "tiny": args.tiny, "steps": steps, "length": length, "image": image, "generations": args.generations,
        "batch": args.generations * args.prompts, "runs": results,
        "rarl_step_s": med(rarl, "median_step_s"), "vanilla_step_s": med(van, "median_step_s"),
    }
    summary["ratio"] = summary["rarl_step_s"] / summary["vanilla_step_s"]
    full = all(n == length for x in results for n in x["completion_lengths"])
    lines = [
        "",
        f"GPU check ({summary['device']}, torch {torch.__version__}; {'tiny layers, CPU dry run' if args.tiny else 'Qwen2.5-VL-3B-shaped, bf16'}"
        f", LoRA r={args.lora_r}, gradient checkpointing {not args.no_grad_ckpt}, G={args.generations}, batch {summary['batch']}, {length}-token completions "
        f"(all full length: {full}), {image}px image, {steps} steps per run, first dropped)",
        "| trainer | median step (s) | generate tok/s | end-to-end gen tok/s | peak GPU mem (GiB) |",
        "|---|---|---|---|---|",
    ]
    for name, rows in (("vanilla TRL GRPOTrainer", van), ("RARL trainer", rarl)):
        lines.append(f"| {name} | {med(rows, 'median_step_s'):.3f} | {med(rows, 'gen_tokens_per_s'):.0f} | "
                     f"{med(rows, 'end_to_end_tokens_per_s'):.0f} | {max(x['peak_gpu_mem_gib'] for x in rows):.2f} |")
    summary["gen_tokens_ratio"] = med(rarl, "gen_tokens_per_s") / med(van, "gen_tokens_per_s")
    peak = lambda rows: max(x["peak_gpu_mem_gib"] for x in rows)  # noqa: E731
    summary["peak_mem_ratio"] = peak(rarl) / peak(van) if cuda else float("nan")
    verdict = lambda ok: "PASS" if ok else ("n/a on CPU" if not cuda else "FAIL")  # noqa: E731
    lines += [
        f"Ratios RARL/vanilla (fast-rollout goals, GPU only): generate tokens/s {summary['gen_tokens_ratio']:.2f}x "
        f"(goal >= 4: {verdict(summary['gen_tokens_ratio'] >= 4)}), step time {summary['ratio']:.3f} "
        f"(goal <= 0.4: {verdict(summary['ratio'] <= 0.4)}), peak memory {summary['peak_mem_ratio']:.2f} "
        f"(goal <= 1.3: {verdict(summary['peak_mem_ratio'] <= 1.3)})",
        f"Trainer overhead bound (any device): step time ratio <= 1.05: "
        f"{'PASS' if summary['ratio'] <= 1.05 else 'FAIL'}; RARL reward+RMO+progress "
        f"share: {100 * med(rarl, 'overhead_share'):.2f} %; wall {time.perf_counter() - t0:.0f} s",
    ]
    print("\n".join(lines), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
