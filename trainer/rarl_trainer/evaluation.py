"""Generation-based evaluation on the eval split: greedy answers, parsed and scored by ``rarl.metrics.evaluate``.

The eval queries are drawn once from a fixed seed, so every evaluation of a run (baseline, end of
each stage, resumed or not) asks the same questions and the numbers are comparable. Under
torchrun each rank answers a strided share and rank 0 gathers the rows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from rarl.answers import parse_answer
from rarl.metrics import evaluate, finite_metrics
from rarl_trainer.prompts import Query, QuerySampler
from rarl_trainer.queries import QueryTable
from rarl_trainer.rollout import RolloutEngine
from rarl_trainer.sharding import sharded
from rarl_trainer.truncation import truncate_padded_batch, vision_token_ids

log = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 7_919


def eval_queries(items, list_sizes, per_size: int | str, seed: int) -> list[Query]:
    """``per_size`` queries for every list size (sizes larger than the split are skipped); ``all``: ``whole_split``."""
    out: list[Query] = []
    for n in list_sizes:
        if n > len(items):
            continue
        if per_size == "all":
            out.extend(whole_split(items, n, seed + EVAL_SEED_OFFSET + n))
            continue
        sampler = QuerySampler(items, [n], rng_seed=seed + EVAL_SEED_OFFSET + n)
        out.extend(sampler.sample_many(int(per_size), n))
    return out


def whole_split(items, n: int, seed: int) -> list[Query]:
    """Every item once, in ``len(items) // n`` lists of n (shuffled), each list's targets distinct where possible.

    Why distinct: a list whose targets tie cannot be ranked, so it says nothing about Kendall tau.
    Items are dealt in a seeded random order; an item whose target a list already holds waits for
    the next list. Lists the leftovers can only fill with a tie get one (the last few at most);
    the ``len(items) % n`` items left over are not asked in lists of n.
    """
    order = [items[int(i)] for i in np.random.default_rng(seed).permutation(len(items))]
    if n == 1:
        return [Query((it,)) for it in order]
    queries: list[Query] = []
    waiting = order
    for _ in range(len(items) // n):
        chosen, later, targets = [], [], set()
        for it in waiting:
            if len(chosen) < n and it.target not in targets:
                chosen.append(it)
                targets.add(it.target)
            else:
                later.append(it)
        while len(chosen) < n:  # only ties are left: fill from the waiting items
            chosen.append(later.pop(0))
        queries.append(Query(tuple(chosen)))
        waiting = later
    return queries


@torch.no_grad()
def generate_answers(loaded, table: QueryTable, indices: list[int], max_new_tokens: int,
                     batch_size: int = 16, device: Any = None, merged: bool = True,
                     max_prompt_length: int | None = None,
                     on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Greedy completions for the queries ``indices`` of ``table`` (texts without special tokens).

    ``on_batch(k)`` is called after each batch with the number of queries it answered (progress bars).

    Prompts longer than ``max_prompt_length`` are cut like the rollouts' (``truncation``).

    ``merged``: generate on LoRA-merged weights (the rollout engine's merge, restored exactly
    afterwards): the same tokens as the PEFT model at about half the per-token cost on a GPU.
    """
    model = loaded.model
    was_training = model.training
    loaded.tokenizer.padding_side = "left"
    device = device or next(model.parameters()).device
    engine = RolloutEngine(model, static_cache=False) if merged else None
    try:
        with engine.merged() if engine is not None else contextlib.nullcontext():
            model.eval()
            texts: list[str] = []
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                texts.extend(_greedy_batch(loaded, [table.row(i) for i in chunk], max_new_tokens, device,
                                           max_prompt_length))
                if on_batch is not None:
                    on_batch(len(chunk))
            return texts
    finally:
        model.train(was_training)


def _greedy_batch(loaded, rows: list[dict[str, Any]], max_new_tokens: int, device: Any,
                  max_prompt_length: int | None) -> list[str]:
    tok = loaded.tokenizer
    prompts = [loaded.processor.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
               for r in rows]
    if loaded.is_vlm:
        inputs = loaded.processor(images=[r["images"] for r in rows], text=prompts, padding=True, return_tensors="pt")
    else:
        inputs = tok(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
    if max_prompt_length is not None:
        inputs, _ = truncate_padded_batch(dict(inputs), max_prompt_length, vision_token_ids(loaded.model.config),
                                          tok.pad_token_id or 0)
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
    out = loaded.model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        **loaded.generation_kwargs(),
    )
    return tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def rank_share(n: int, rank: int, world_size: int, equal: bool = False) -> list[int]:
    """The query indices one rank answers: every ``world_size``-th from ``rank``.

    ``equal``: every rank gets the same number (a short share repeats its last query), since the
    forwards of a sharded (FSDP) model are collectives that every rank must run alike.
    """
    indices = list(range(rank, n, world_size))
    if equal and n:
        share = -(-n // world_size)
        indices += [indices[-1] if indices else n - 1] * (share - len(indices))
    return indices


def run_eval(loaded, table: QueryTable, max_new_tokens: int, precision: float, rank: int = 0,
             world_size: int = 1, max_prompt_length: int | None = None,
             equal_shares: bool = False) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(finite metrics, rows) for every query of ``table``; every rank must call it under torchrun.

    ``equal_shares``: as in ``rank_share`` (a sharded model).
    """
    indices = rank_share(len(table.queries), rank, world_size, equal_shares)
    texts = generate_answers(loaded, table, indices, max_new_tokens, max_prompt_length=max_prompt_length)
    local = [{"i": i, "target": list(table.queries[i].targets), "completion": t} for i, t in zip(indices, texts, strict=False)]
    rows = local
    if world_size > 1:
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, local)
        unique = {r["i"]: r for part in gathered for r in part}  # a repeated query counts once
        rows = sorted(unique.values(), key=lambda r: r["i"])

    for r in rows:
        r["pred"] = parse_answer(r["completion"], len(r["target"])).values
    metrics = finite_metrics(evaluate(rows, precision=precision))
    return metrics, rows


# --------------------------------------------------------------------------- a run's evaluations

SHOWN_KEYS = ("n1/mae", "n1/acc", "invalid_rate")
"""The metrics an evaluation prints (with every ``nK/tau``)."""


def run_eval_table(spec, eval_items, string_content: bool, pixels=None) -> QueryTable:
    """A run's evaluation queries (``grpo.evalListSizes`` x ``grpo.evalQueries``), the same at every evaluation.

    ``pixels``: the model's ``data.PixelBudget`` (large images shrunk once when read), or None."""
    g = spec.grpo
    return QueryTable(eval_queries(eval_items, g.eval_list_sizes, g.eval_queries, g.seed), spec.dataset,
                      spec.dataset.modality, string_content, pixels)


def evaluate_run(loaded, table: QueryTable, spec, dist, label: str) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """One evaluation of a run, named ``label`` in the line rank 0 prints: (finite metrics, rows)."""
    t0 = time.monotonic()

    metrics, rows = run_eval(loaded, table, spec.grpo.max_completion_length, float(spec.dataset.target.precision),
                             dist.rank, dist.world_size, max_prompt_length=spec.grpo.max_prompt_length,
                             equal_shares=sharded(spec))
    if dist.is_main:
        shown = {k: round(v, 3) for k, v in metrics.items() if k in SHOWN_KEYS or k.endswith("/tau")}
        log.info(f"[eval {label}] {json.dumps(shown)} ({time.monotonic() - t0:.1f}s)")
    return metrics, rows


def sample_rows(rows: list[dict[str, Any]], per_size: int = 2) -> list[dict[str, Any]]:
    """The first ``per_size`` evaluation rows of every list size (the same queries at every evaluation)."""
    seen: dict[int, int] = {}
    out = []
    for r in rows:
        n = len(r["target"])
        if seen.get(n, 0) < per_size:
            seen[n] = seen.get(n, 0) + 1
            out.append({k: r[k] for k in ("target", "pred", "completion") if k in r})
    return out
