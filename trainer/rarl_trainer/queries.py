"""A stage's queries as TRL's training dataset: drawn up front from a seeded sampler, built lazily.

GRPO and SFT stages train on them, the evaluation asks them and ``predict`` answers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rarl_trainer.prompts import Query, QuerySampler, as_string_content, build_messages, prompt_for


@dataclass
class QueryTable:
    """Pre-drawn queries of a stage, exposed to TRL as a ``datasets.Dataset`` of indices.

    Drawing every query up front from a seeded sampler makes the data position a plain index,
    so resume continues with exactly the queries the interrupted run would have seen. Prompts
    and images are built lazily (``with_transform``) so nothing large is materialised.
    """

    queries: list[Query]
    dataset_spec: Any
    modality: str
    string_content: bool = False  # the model's chat template takes plain strings only (models.LoadedModel)

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

    def row(self, index: int) -> dict[str, Any]:
        from rarl_trainer.data import open_image

        q = self.queries[index]
        out = {"prompt": self.messages(q), "targets": [float(t) for t in q.targets]}
        if self.modality == "image":
            out["images"] = [open_image(it) for it in q.items]
        return out

    def to_dataset(self):
        from datasets import Dataset

        ds = Dataset.from_dict({"qid": list(range(len(self.queries)))})

        def transform(batch: dict[str, list]) -> dict[str, list]:
            rows = [self.row(int(i)) for i in batch["qid"]]
            return {k: [r[k] for r in rows] for k in rows[0]}

        return ds.with_transform(transform)


def draw_queries(items, list_sizes: Sequence[int], count: int, seed: int,
                 strata: Sequence[int] | None = None) -> list[Query]:
    return QuerySampler(items, list_sizes, rng_seed=seed, strata=strata).sample_many(count)
