"""A stage's queries as TRL's training dataset: drawn up front from a seeded sampler, built lazily.

GRPO and SFT stages train on them, the evaluation asks them and ``predict`` answers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from rarl_trainer.data import open_image
from rarl_trainer.prompts import Query, QuerySampler, as_string_content, build_messages, prompt_for


@dataclass
class QueryTable:
    """Pre-drawn queries of a stage, exposed to TRL as a ``datasets.Dataset`` of indices.

    Drawing every query up front from a seeded sampler makes the data position a plain index,
    so resume continues with exactly the queries the interrupted run would have seen. Prompts
    and images are built lazily (``with_transform``) so nothing large is materialised.

    Images are decoded once per batch TRL fetches: its sampler repeats each query once per
    generation (``numGenerations``) and fetches the same batch again for each step of one
    generation round (``steps_per_generation x num_iterations``), so ``rows`` decodes each query's
    images once and reuses the images of the previous fetch (only those: memory stays one batch).
    ``pixels`` (``models.LoadedModel.pixels``) shrinks large images once to the processor's size.
    """

    queries: list[Query]
    dataset_spec: Any
    modality: str
    string_content: bool = False  # the model's chat template takes plain strings only (models.LoadedModel)
    pixels: Any = None  # data.PixelBudget of the model's image processor, or None (images at native size)
    _recent: dict[int, list[Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def messages(self, query: Query) -> list[dict[str, Any]]:
        template, what = prompt_for(self.dataset_spec)
        msgs = build_messages(query, self.dataset_spec.target, template, self.modality, what)
        if self.string_content:
            return as_string_content(msgs)
        # Image parts become bare placeholders; TRL fills them from the "images" column.
        for msg in msgs:
            if isinstance(msg["content"], list):
                msg["content"] = [
                    {"type": "image"} if part.get("type") == "image" else part for part in msg["content"]
                ]
        return msgs

    def images(self, index: int) -> list[Any]:
        """The query's images, decoded now (RGB, shrunk to ``pixels`` when given)."""
        return [open_image(it, self.pixels) for it in self.queries[index].items]

    def row(self, index: int, images: list[Any] | None = None) -> dict[str, Any]:
        """The prompt, targets and (image modality) images of one query; ``images`` already decoded, if given."""
        q = self.queries[index]
        out = {"prompt": self.messages(q), "targets": [float(t) for t in q.targets]}
        if self.modality == "image":
            out["images"] = list(images) if images is not None else self.images(index)
        return out

    def rows(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Rows of ``indices``: each query's images decoded once, shared by its repeats and the next call's."""
        if self.modality != "image":
            return [self.row(int(i)) for i in indices]
        decoded: dict[int, list[Any]] = {}
        for raw in indices:
            i = int(raw)
            if i not in decoded:
                decoded[i] = self._recent[i] if i in self._recent else self.images(i)
        self._recent = decoded
        return [self.row(int(i), decoded[int(i)]) for i in indices]

    def to_dataset(self):
        ds = Dataset.from_dict({"qid": list(range(len(self.queries)))})

        def transform(batch: dict[str, list]) -> dict[str, list]:
            rows = self.rows(batch["qid"])
            return {k: [r[k] for r in rows] for k in rows[0]}

        return ds.with_transform(transform)


def draw_queries(items, list_sizes: Sequence[int], count: int, seed: int,
                 strata: Sequence[int] | None = None, deal: bool = False) -> list[Query]:
    return QuerySampler(items, list_sizes, rng_seed=seed, strata=strata, deal=deal).sample_many(count)
