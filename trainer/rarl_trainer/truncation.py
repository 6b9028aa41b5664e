"""``grpo.maxPromptLength``: prompts cut from the left, vision tokens always kept.

Why from the left: the end of a chat prompt is the generation prompt (``<|im_start|>assistant``)
and the question, which the model must see; the oldest text (system prompt, instructions) goes
first. Why vision tokens are protected: each image placeholder token stands for a slice of
``pixel_values``; dropping one would desynchronise text and image features (the model would
raise), so a prompt whose vision tokens alone exceed the limit keeps them all and stays longer
than the limit (counted, and warned about once by the trainer). This is the rule TRL applied
before it removed prompt truncation (``truncate_with_protected_tokens``).

The same rule serves GRPO rollouts (token lists from TRL's ``_tokenize_prompts``) and the
trainer's evaluation (left-padded tensors from the processor), so both see the same prompts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

# Processor outputs with one entry per prompt token (cut with the prompt); everything else (pixel_values,
# image_grid_thw, ...) describes the images and stays whole.
PER_TOKEN_KEYS = frozenset({"input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids"})


def vision_token_ids(config: Any) -> frozenset[int]:
    """Image/video/vision-boundary token ids of a model config (empty for a text model)."""
    ids: set[int] = set()
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is None:
            continue
        for key, value in cfg.to_dict().items():
            if key.endswith("_token_id") and any(w in key for w in ("image", "video", "vision")) and isinstance(value, int):
                ids.add(value)
    return frozenset(ids)


def kept_positions(ids: Sequence[int], max_length: int | None, protected: Iterable[int] = ()) -> list[int]:
    """Positions of ``ids`` that survive truncation to ``max_length`` (in order).

    All protected tokens are kept; the rest of the budget goes to the rightmost other tokens.
    """
    n = len(ids)
    if max_length is None or n <= max_length:
        return list(range(n))
    protected = frozenset(protected)
    is_protected = [t in protected for t in ids]
    budget = max(0, max_length - sum(is_protected))
    keep = [False] * n
    for i in range(n - 1, -1, -1):
        if is_protected[i]:
            keep[i] = True
        elif budget > 0:
            keep[i] = True
            budget -= 1
    return [i for i in range(n) if keep[i]]


def truncate_token_lists(prompt_ids: list[list[int]], fields: dict[str, Any], max_length: int | None,
                         protected: Iterable[int] = ()) -> tuple[list[list[int]], dict[str, Any], int]:
    """(prompt ids, multimodal fields, prompts cut) for TRL's unpadded per-prompt token lists.

    Per-token fields (``PER_TOKEN_KEYS`` given as lists of lists aligned with the prompts) are cut at
    the same positions; image tensors (``pixel_values``, ``image_grid_thw``) are untouched.
    """
    if max_length is None:
        return prompt_ids, fields, 0
    protected = frozenset(protected)
    keeps = [kept_positions(ids, max_length, protected) for ids in prompt_ids]
    cut = sum(len(k) < len(ids) for k, ids in zip(keeps, prompt_ids, strict=True))
    if not cut:
        return prompt_ids, fields, 0
    new_ids = [[ids[i] for i in k] for ids, k in zip(prompt_ids, keeps, strict=True)]
    new_fields = dict(fields)
    for name, value in fields.items():
        if name in PER_TOKEN_KEYS and _aligned_lists(value, prompt_ids):
            new_fields[name] = [[row[i] for i in k] for row, k in zip(value, keeps, strict=True)]
    return new_ids, new_fields, cut


def _aligned_lists(value: Any, prompt_ids: list[list[int]]) -> bool:
    if not isinstance(value, list) or len(value) != len(prompt_ids):
        return False
    return all(hasattr(row, "__len__") and not hasattr(row, "shape") and len(row) == len(ids)
               for row, ids in zip(value, prompt_ids, strict=True))


def truncate_padded_batch(inputs: dict[str, Any], max_length: int | None, protected: Iterable[int] = (),
                          pad_token_id: int = 0) -> tuple[dict[str, Any], int]:
    """(inputs, prompts cut) for a left-padded batch of tensors (``input_ids`` + ``attention_mask``).

    The per-token tensors (``PER_TOKEN_KEYS``) are cut at the same positions and re-padded on the
    left; image tensors are untouched.
    """
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    if max_length is None or int(mask.sum(1).max()) <= max_length:
        return inputs, 0
    protected = frozenset(protected)
    rows = []
    for b in range(ids.shape[0]):
        real = mask[b].nonzero().flatten().tolist()
        keep = kept_positions([int(ids[b, i]) for i in real], max_length, protected)
        rows.append([real[i] for i in keep])
    width = max(len(r) for r in rows)
    cut = sum(len(r) < int(mask[b].sum()) for b, r in enumerate(rows))
    out = dict(inputs)
    for name, value in inputs.items():
        if name not in PER_TOKEN_KEYS or not (isinstance(value, torch.Tensor) and value.shape == ids.shape):
            continue
        fill = pad_token_id if name == "input_ids" else 0
        new = torch.full((ids.shape[0], width), fill, dtype=value.dtype, device=value.device)
        for b, r in enumerate(rows):
            if r:
                new[b, width - len(r):] = value[b, r]
        out[name] = new
    return out, cut
