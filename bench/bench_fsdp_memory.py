"""Per-rank training-state memory (parameters + gradients + AdamW state) under DDP vs FSDP2.

Run: ``.venv/bin/torchrun --nproc_per_node 2 bench/bench_fsdp_memory.py [--models tiny-lm,smollm2-135m-instruct]
[--quick] [--no-record]`` (``--record``, appending, is the default, as in every bench script).

Each rank loads the builtin model in fp32, wraps it (DDP, then FSDP2: ``fully_shard`` on every decoder layer,
then on the root, over a 1-D CPU mesh, gloo), runs one forward/backward/AdamW step on a small random batch
and then counts the bytes this rank holds: the storages behind its parameters, ``.grad`` tensors and
optimizer-state tensors (DTensors counted by their local shard; storages shared by several tensors counted
once, so FSDP2's padded shard buffers are counted with their padding). Rank 0 gathers the figures, prints the
table and (unless ``--no-record``) appends it to bench/RESULTS.md with a prediction, from the same accounting,
of the per-GPU training state of nominal 3B and 7B models at 8 and 16 GPUs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
from _common import add_common_args, record

GB = 1e9
NOMINAL = [("3B (nominal 3.0e9)", 3.0e9), ("7B (nominal 7.0e9)", 7.0e9)]
WORLDS = [8, 16]
GPUS = [("H100 80 GB", 80.0), ("H200 141 GB", 141.0)]
REF_BYTES_PER_PARAM = 2.0  # assumption: TRL's reference model (GRPO beta > 0) is a frozen bf16 copy


def local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


class Counter:
    """Bytes of unique storages (a storage seen twice, e.g. two views of one buffer, counts once)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def __call__(self, tensors) -> tuple[int, int]:
        storage_bytes = numel_bytes = 0
        for tensor in tensors:
            t = local(tensor)
            numel_bytes += t.numel() * t.element_size()
            st = t.untyped_storage()
            if st.data_ptr() in self.seen:
                continue
            self.seen.add(st.data_ptr())
            storage_bytes += st.nbytes()
        return storage_bytes, numel_bytes


def measure(path, mode: str, world: int, batch: int, seq: int) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    full_shape = tuple(model.model.embed_tokens.weight.shape)
    if mode == "ddp":
        # gradient_as_bucket_view: the .grad tensors are views into DDP's communication buckets, so counting
        # grads counts the buckets too (with the default False, DDP holds a further ~4 B/param of buckets).
        wrapped = torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
    else:
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        wrapped = model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(dist.get_rank())
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g)
    t0 = time.perf_counter()
    loss = wrapped(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    step_s = time.perf_counter() - t0
    params = list(model.parameters())
    count = Counter()
    p_st, p_nb = count(params)
    g_st, g_nb = count([p.grad for p in params if p.grad is not None])
    states = [v for p in params for v in opt.state[p].values() if isinstance(v, torch.Tensor)]
    o_st, o_nb = count(states)
    row = {
        "rank": dist.get_rank(), "mode": mode, "n_params": n_params,
        "params": p_st, "grads": g_st, "optim": o_st, "total": p_st + g_st + o_st,
        "numel_total": p_nb + g_nb + o_nb,
        "embed_local": tuple(local(model.model.embed_tokens.weight).shape), "embed_full": full_shape,
        "step_s": step_s, "loss": float(loss.detach()),
    }
    del wrapped, model, opt, params, states, loss
    return row


def mb(x: float) -> str:
    return f"{x / 1e6:,.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--record", action="store_true", help="append to bench/RESULTS.md (the default)")
    ap.add_argument("--models", default="tiny-lm,smollm2-135m-instruct", help="comma-separated builtin names")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=16)
    args = ap.parse_args()
    models = ["tiny-lm"] if args.quick else [m for m in args.models.split(",") if m]

    from rarl_trainer.builtin_models import builtin_path

    paths = {m: builtin_path(m) for m in models}  # built (if at all) before the process group is up
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    results: dict[str, dict[str, list[dict]]] = {}
    for m in models:
        for mode in ("ddp", "fsdp"):
            row = measure(paths[m], mode, world, args.batch, args.seq)
            gathered: list = [None] * world
            dist.all_gather_object(gathered, row)
            results.setdefault(m, {})[mode] = gathered
            if rank == 0:
                print(f"{m} {mode}: " + ", ".join(f"rank {r['rank']} total {mb(r['total'])} MB" for r in gathered),
                      flush=True)
            dist.barrier()
    dist.destroy_process_group()
    if rank != 0:
        return 0
    body = report(results, world, args)
    print(body)
    record("bench_fsdp_memory.py: per-rank training state, DDP vs FSDP2", body, ["torch", "transformers"],
           enabled=not args.no_record)
    return 0


def report(results: dict, world: int, args) -> str:
    lines = [
        f"gloo on CPU, world size {world} (torchrun --nproc_per_node {world}), fp32 weights, AdamW (foreach), "
        f"one forward/backward/step on a random batch {args.batch} x {args.seq} tokens. Bytes held by each rank "
        "after the step: unique storages behind parameters, `.grad` and optimizer state (DTensors by local shard; "
        "FSDP2's padded shard buffers with their padding). DDP with `gradient_as_bucket_view=True` (grads are the "
        "buckets; the default keeps a further ~4 B/param of buckets). FSDP2: `fully_shard` per decoder layer, "
        "then the root. MB = 1e6 bytes.",
        "",
        "Command: `.venv/bin/torchrun --nproc_per_node 2 bench/bench_fsdp_memory.py --record`",
        "",
        "| model (params) | wrap | rank | params (MB) | grads (MB) | AdamW state (MB) | total (MB) | B/param "
        "(of the full model) | embed_tokens local shape | FSDP/DDP total |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    bpp_ddp = []
    fsdp_over_ideal = []
    for m, by_mode in results.items():
        ddp = {r["rank"]: r for r in by_mode["ddp"]}
        for mode in ("ddp", "fsdp"):
            for r in by_mode[mode]:
                n = r["n_params"]
                ratio = f"{r['total'] / ddp[r['rank']]['total']:.4f}" if mode == "fsdp" else "-"
                lines.append(
                    f"| {m} ({n / 1e6:,.3f} M) | {'DDP' if mode == 'ddp' else 'FSDP2'} | {r['rank']} | "
                    f"{mb(r['params'])} | {mb(r['grads'])} | {mb(r['optim'])} | {mb(r['total'])} | "
                    f"{r['total'] / n:.3f} | {r['embed_local']} of {r['embed_full']} | {ratio} |")
                if mode == "ddp":
                    bpp_ddp.append(r["total"] / n)
                else:
                    fsdp_over_ideal.append(r["total"] / (ddp[r["rank"]]["total"] / world))
    b = max(bpp_ddp)
    pad = max(fsdp_over_ideal)
    lines += [
        "",
        f"Measured: DDP holds {min(bpp_ddp):.3f}..{b:.3f} B per parameter on every rank (fp32 param 4 + grad 4 + "
        "AdamW exp_avg 4 + exp_avg_sq 4 = 16, plus AdamW's 4-byte `step` tensor per parameter tensor); FSDP2 "
        f"holds at most {pad:.4f} x (DDP / {world}) on any rank (the excess over 1/{world}: padding of dims not "
        f"divisible by {world} and the replicated `step` scalars).",
        "",
        "Predicted per-GPU training state from the same accounting: DDP = 16 B x N on every GPU at any world size; "
        "FSDP2 = 16 B x N / world (FSDP2 overhead taken as 1.0: a 3B/7B model's dims divide by 8 and 16, so no "
        "padding). Reference model column: TRL's reference model when GRPO beta > 0, assumed a frozen bf16 copy, "
        f"{REF_BYTES_PER_PARAM:g} B/param, replicated under DDP and sharded the same way under FSDP2 (an "
        "assumption, not measured). N is nominal (3.0e9, 7.0e9: round figures, not counted from a config). These "
        "exclude activations, FSDP2's gathered (unsharded) layer during forward/backward, the rollout engine, "
        "and the CUDA context/allocator cache. GB = 1e9 bytes; GPU capacities are vendor figures (80 GB, 141 GB).",
        "",
        "| model | wrap | GPUs | params+grads+AdamW (GB) | + bf16 reference (GB) | total (GB) | "
        + " | ".join(f"share of {name}" for name, _ in GPUS) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(GPUS),
    ]
    for name, n in NOMINAL:
        for wrap in ("DDP", "FSDP2"):
            for w in WORLDS:
                div = 1 if wrap == "DDP" else w
                state = 16.0 * n / div / GB
                ref = REF_BYTES_PER_PARAM * n / div / GB
                tot = state + ref
                shares = " | ".join(f"{tot / cap:.0%}" + (" (does not fit)" if tot > cap else "") for _, cap in GPUS)
                lines.append(f"| {name} | {wrap} | {w} | {state:.2f} | {ref:.2f} | {tot:.2f} | {shares} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
