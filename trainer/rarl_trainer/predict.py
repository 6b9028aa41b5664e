"""Predictions of an exported model: the JSONL rows ``rarlctl eval`` reads.

The model is the export's merged ``model/`` folder (plain transformers, its own processor and chat
template); the items, the prompt and the target range come from a job's ``dataset`` spec. Queries
are drawn exactly as the trainer's evaluation draws them (same seed, same sizes), so predicting
the job's eval split with its ``evalQueries`` reproduces the numbers of its report; ``every_item``
asks about each item once instead (lists of one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rarl_trainer.config import ConfigError


class PredictError(ConfigError):
    """An export, data set or option that cannot be predicted with (a message for the user)."""


def export_model_folder(location: Path) -> Path:
    """The merged model folder of an export root (``<root>/model``) or the folder itself."""
    for folder in (location / "model", location):
        if (folder / "config.json").is_file():
            return folder
    if (location / "adapter" / "adapter_config.json").is_file():
        raise PredictError(f"{location}: the export has only a LoRA adapter (output.mergeAdapter was false); "
                           "predict needs its merged model/ folder")
    raise PredictError(f"{location}: not an exported model (no model/config.json)")


def load_export(location: Path):
    """The exported model with its processor, ready to generate (no LoRA: the adapter is merged in).

    The processor keeps the pixel range the export saved (the job's ``spec.model.vision``), so
    images are sized as in training; predicting applies no range of its own.
    """
    from transformers.utils import logging as hf_logging

    from rarl.api.types import LoRASpec, ModelSpec, VisionSpec
    from rarl_trainer.models import ModelLoadError, load_model

    folder = export_model_folder(location)
    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar is noise in predict's output (its own bar stays)
    try:
        return load_model(ModelSpec(base=str(folder), dtype="float32", lora=LoRASpec(enabled=False),
                                    vision=VisionSpec(max_pixels=None)))
    except ModelLoadError as e:
        raise PredictError(str(e)) from None


def draw(items, list_sizes: Sequence[int], queries: int, seed: int, every_item: bool):
    """The queries to ask: the trainer's evaluation queries, or each item once."""
    from rarl_trainer.evaluation import eval_queries
    from rarl_trainer.prompts import Query

    if every_item:
        return [Query((it,)) for it in items]
    too_long = [n for n in list_sizes if n > len(items)]
    if too_long:
        raise PredictError(f"lists of {too_long[0]} need at least {too_long[0]} items; the data has {len(items)}")
    return eval_queries(items, list_sizes, queries, seed)


def predict(loaded, dataset_spec, queries, max_new_tokens: int,
            on_progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Greedy answers for ``queries``: ``{"id", "pred", "target", "completion"}`` per query."""
    from rarl.answers import parse_answer
    from rarl_trainer.evaluation import generate_answers
    from rarl_trainer.queries import QueryTable

    if dataset_spec.modality == "image" and not loaded.is_vlm:
        raise PredictError("the data has image items but the exported model is a text model")
    table = QueryTable(list(queries), dataset_spec, dataset_spec.modality, loaded.string_content, loaded.pixels)
    texts = generate_answers(loaded, table, list(range(len(table.queries))), max_new_tokens, merged=False,
                             on_batch=on_progress)
    return [{"id": [it.id for it in q.items], "pred": parse_answer(text, q.n).values, "target": list(q.targets),
             "completion": text} for q, text in zip(table.queries, texts, strict=True)]
