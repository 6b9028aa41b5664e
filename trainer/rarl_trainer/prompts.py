"""Queries (lists of n items) and the chat messages that ask the model about them.

Messages use the transformers multimodal chat format, so any processor's chat template
(Qwen2/2.5-VL first) can render them; text items become text parts and work with text LMs.
Instruction templates are plain strings with placeholders replaced by name only, so other
braces in a user template (JSON examples...) are left alone. Placeholders: {n}, {unit}, {min},
{max}, {what}, {format}, and {items} ("the image" / "each of the 4 images").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from rarl_trainer.data import Item

if TYPE_CHECKING:
    from rarl.api.types import DatasetSpec, TargetSpec

__all__ = [
    "DEFAULT_INSTRUCTION",
    "Query",
    "QuerySampler",
    "answer_format",
    "as_string_content",
    "balanced_strata",
    "build_messages",
    "decimals_for",
    "format_value",
    "format_values",
    "level_index",
    "level_of",
    "level_words",
    "prompt_for",
    "reference_answer",
    "reference_reasoning",
    "render_instruction",
    "what_for",
]

DEFAULT_REASONING = "I compare the items and estimate each value."

DEFAULT_INSTRUCTION = (
    "Estimate {what} for {items}, in {unit}, as a number from {min} to {max}. "
    "Think step by step inside <think></think>, then give one value per item, in the order shown, "
    "exactly in this format: {format}"
)

_WHAT_BY_FORMAT = {
    "utkface": "the age of the person",
    "ava": "the aesthetic quality score (the mean rating human voters would give)",
    "jsonl": "the target value",
}


@dataclass(frozen=True)
class Query:
    """n items asked about together; the model answers one value per item, in this order."""

    items: tuple[Item, ...]

    @property
    def n(self) -> int:
        return len(self.items)

    @property
    def targets(self) -> list[float]:
        return [it.target for it in self.items]


class QuerySampler:
    """Draws queries: n uniform from ``list_sizes``, items uniform, targets distinct when possible.

    Distinct targets make every pair of a list rankable. Items are drawn uniformly and an item
    whose target is already in the list is redrawn (a bounded number of times), so the item
    distribution stays uniform; when the data has fewer distinct targets than n, ties are allowed.
    Items never repeat within a query unless the dataset has fewer than n items.

    ``strata`` (one label per item, ``balanced_strata``) draws each item from a stratum chosen
    uniformly first, then uniformly within it: every level comes up equally often however skewed
    the data set is (``dataset.sampling: balanced``). ``deal``: the strata are dealt from shuffled
    decks instead (every stratum once per deck), so any run of consecutive draws (one optimizer
    step's queries) covers the levels evenly, not only in expectation (``balanced-per-step``).
    """

    def __init__(self, items: Sequence[Item], list_sizes: Sequence[int], rng_seed: int = 0,
                 strata: Sequence[int] | None = None, deal: bool = False):
        if not items:
            raise ValueError("QuerySampler needs at least one item")
        if not list_sizes or any(int(n) < 1 for n in list_sizes):
            raise ValueError(f"list_sizes must be a non-empty list of sizes >= 1, got {list(list_sizes)}")
        self.items = list(items)
        self.list_sizes = [int(n) for n in list_sizes]
        self.rng = np.random.default_rng(rng_seed)
        self._distinct_targets = len({it.target for it in self.items})
        self._groups: list[list[int]] | None = None
        if strata is not None:
            if len(strata) != len(self.items):
                raise ValueError(f"strata has {len(strata)} labels for {len(self.items)} items")
            groups: dict[int, list[int]] = {}
            for i, label in enumerate(strata):
                groups.setdefault(int(label), []).append(i)
            self._groups = [groups[k] for k in sorted(groups)]
        elif deal:
            raise ValueError("deal needs strata")
        self._deal = deal
        self._deck: list[int] = []

    def _stratum(self) -> int:
        if not self._deal:
            return int(self.rng.integers(len(self._groups)))
        if not self._deck:
            self._deck = [int(k) for k in self.rng.permutation(len(self._groups))]
        return self._deck.pop()

    def _draw(self) -> int:
        if self._groups is None:
            return int(self.rng.integers(len(self.items)))
        group = self._groups[self._stratum()]
        return group[int(self.rng.integers(len(group)))]

    def get_state(self) -> dict[str, Any]:
        """RNG state, for checkpoints (resume draws the same queries)."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state

    def sample(self, n: int | None = None) -> Query:
        """One query of n items (n drawn from list_sizes when not given)."""
        if n is None:
            n = self.list_sizes[int(self.rng.integers(len(self.list_sizes)))]
        total = len(self.items)
        want_distinct = min(n, self._distinct_targets)
        chosen: list[int] = []
        used_idx: set[int] = set()
        used_targets: set[float] = set()
        tries = 0
        while len(chosen) < n:
            idx = self._draw()
            tries += 1
            if idx in used_idx and total >= n:
                continue
            target = self.items[idx].target
            if target in used_targets and len(used_targets) < want_distinct and tries < 50 * n:
                continue
            if target in used_targets and len(used_targets) < want_distinct:
                # Too many misses (rare targets): pick the first unused target in a random order.
                order = self.rng.permutation(total)
                for raw in order:
                    j = int(raw)
                    if self.items[j].target not in used_targets and j not in used_idx:
                        idx = j
                        break
            chosen.append(idx)
            used_idx.add(idx)
            used_targets.add(self.items[idx].target)
        return Query(tuple(self.items[i] for i in chosen))

    def sample_many(self, count: int, n: int | None = None) -> list[Query]:
        return [self.sample(n) for _ in range(count)]


def decimals_for(precision: float) -> int:
    """Decimal places that show a value rounded to ``precision`` (1 -> 0, 0.1 -> 1, 0.25 -> 2)."""
    exp = Decimal(repr(float(precision))).normalize().as_tuple().exponent
    return max(0, -int(exp))


def format_value(value: float, precision: float) -> str:
    """A value rounded to precision, as the model should write it (no thousands separators)."""
    rounded = round(round(float(value) / precision) * precision, 10)
    decimals = decimals_for(precision)
    text = f"{rounded:.{decimals}f}"
    return f"{0.0:.{decimals}f}" if float(text) == 0 else text


def format_values(values: Sequence[float], precision: float) -> str:
    """``[v1, v2, ...]`` with ', ' between values (the parser's unambiguous form)."""
    return "[" + ", ".join(format_value(v, precision) for v in values) + "]"


def answer_format(n: int) -> str:
    """The answer format shown in the prompt for a list of n items."""
    if n <= 4:
        inner = ", ".join(f"v{i}" for i in range(1, n + 1))
    else:
        inner = f"v1, v2, ..., v{n}"
    return f"<think>...</think><answer>[{inner}]</answer>"


def what_for(spec: DatasetSpec) -> str:
    """The quantity named in the prompt for a dataset."""
    builtin = spec.builtin()
    if builtin is not None:
        return builtin.what
    if spec.format == "coco-rem":
        return f"the number of objects of the category '{spec.category}'"
    if spec.format == "synthetic":
        if spec.modality == "text":
            return "the number of times the word 'apple' appears"
        return "the number of shapes"
    return _WHAT_BY_FORMAT.get(spec.format, "the target value")


def prompt_for(spec: DatasetSpec) -> tuple[str, str]:
    """(instruction template, what) for a dataset: ``spec.instruction`` or the default template."""
    return (spec.instruction or DEFAULT_INSTRUCTION), what_for(spec)


def render_instruction(template: str, n: int, target_spec: TargetSpec, what: str, modality: str = "image") -> str:
    """Replace the known placeholders of a template (other braces are kept)."""
    noun = "image" if modality == "image" else "text"
    items = f"the {noun}" if n == 1 else f"each of the {n} {noun}s"
    fields = {
        "n": str(n),
        "unit": target_spec.unit or "units",
        "min": format_value(target_spec.min, target_spec.precision),
        "max": format_value(target_spec.max, target_spec.precision),
        "what": what,
        "format": answer_format(n),
        "items": items,
    }
    out = template
    for key, value in fields.items():
        out = out.replace("{" + key + "}", value)
    return out


def build_messages(
    query: Query | Sequence[Item],
    target_spec: TargetSpec,
    instruction_template: str | None = None,
    modality: str = "image",
    what: str = "the target value",
) -> list[dict[str, Any]]:
    """One user message: labelled items ("Image 1:" + image part, or "Item 1: <text>"), then the instruction."""
    items = query.items if isinstance(query, Query) else tuple(query)
    content: list[dict[str, Any]] = []
    for i, item in enumerate(items, start=1):
        if modality == "image":
            if item.image is None:
                raise ValueError(f"item {item.id!r} has no image but the modality is 'image'")
            content.append({"type": "text", "text": f"Image {i}:"})
            content.append({"type": "image", "image": item.image})
        else:
            if item.text is None:
                raise ValueError(f"item {item.id!r} has no text but the modality is 'text'")
            content.append({"type": "text", "text": f"Item {i}: {item.text}"})
    instruction = render_instruction(instruction_template or DEFAULT_INSTRUCTION, len(items), target_spec, what, modality)
    content.append({"type": "text", "text": instruction})
    return [{"role": "user", "content": content}]


TEMPLATE_PROBE = "rarl-chat-template-probe"


def template_takes_parts(processor) -> bool:
    """Whether the model's chat template renders list-of-parts content (VLM templates) or strings only.

    Found by rendering a probe, not guessed from the model's name. String-only templates (SmolLM2,
    Llama and most text LMs) either raise on a list (``can only concatenate str (not "list")``) or
    print the Python list; both mean "send plain strings".
    """
    probe = [{"role": "user", "content": [{"type": "text", "text": TEMPLATE_PROBE}]}]
    try:
        out = processor.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception:  # any template error on a list is the answer to the question, not a failure
        return False
    return isinstance(out, str) and TEMPLATE_PROBE in out and "'type'" not in out and '"type"' not in out


def as_string_content(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same messages with text-only content as one string (parts joined by newlines), for string templates."""
    out = []
    for msg in messages:
        content = msg["content"]
        if isinstance(content, list):
            if any(part.get("type") != "text" for part in content):
                raise ValueError("a message with image parts cannot be sent to a string-only chat template")
            content = "\n".join(part["text"] for part in content)
        out.append({**msg, "content": content})
    return out


_ANCHOR = r"\{%s\}\s*\(([^()]{1,40})\)"


def level_words(target_spec: TargetSpec, instruction: str | None = None) -> tuple[str, ...] | None:
    """The words the SFT reasoning names for the scale's bands, lowest first; None: the fixed sentence.

    ``target.levels`` when declared; else the words an instruction gives the ends of its scale,
    ``{min} (very negative) to {max} (very positive)`` -> (very negative, very positive), two bands.
    Why: the model answers from what it can say about an item, and these words carry the
    quantity's meaning. Measured on VADER (one seed each, bench/RESULTS.md): SFT reached n=1 SRCC
    0.36 with these two words, 0.15 with the fixed sentence, 0.145 with five neutral bands (very
    low ... very high) and 0.16 with four (very negative, negative, positive, very positive).
    """
    if target_spec.levels:
        return tuple(target_spec.levels)
    if instruction:
        low, high = re.search(_ANCHOR % "min", instruction), re.search(_ANCHOR % "max", instruction)
        if low and high and low.group(1).strip() != high.group(1).strip():
            return (low.group(1).strip(), high.group(1).strip())
    return None


def level_of(value: float, target_spec: TargetSpec, levels: Sequence[str] | None = None) -> str:
    """The level word (``levels``, default ``target.levels``) for the equal band of [min, max] that holds value."""
    levels = levels or target_spec.levels
    if not levels:
        raise ValueError("the target has no levels")
    return levels[level_index(value, target_spec, len(levels))]


def level_index(value: float, target_spec: TargetSpec, count: int) -> int:
    """Which of ``count`` equal bands of [min, max] holds value (0 = lowest; values outside clamp)."""
    share = (float(value) - target_spec.min) / (target_spec.max - target_spec.min)
    return min(count - 1, max(0, int(share * count)))


def balanced_strata(items: Sequence[Item], target_spec: TargetSpec) -> list[int]:
    """Stratum of each item for balanced sampling: its level band, or its target value without levels."""
    if target_spec.levels:
        return [level_index(it.target, target_spec, len(target_spec.levels)) for it in items]
    values = sorted({it.target for it in items})
    rank = {v: i for i, v in enumerate(values)}
    return [rank[it.target] for it in items]


def reference_reasoning(targets: Sequence[float], target_spec: TargetSpec, instruction: str | None = None) -> str:
    """The SFT reasoning for these targets: each item's level ("Item 1 is negative.", ``level_words``),
    or the fixed sentence when there are no level words."""
    levels = level_words(target_spec, instruction)
    if levels is None:
        return DEFAULT_REASONING
    return " ".join(f"Item {i} is {level_of(v, target_spec, levels)}." for i, v in enumerate(targets, start=1))


def reference_answer(targets: Sequence[float], precision: float, reasoning: str = DEFAULT_REASONING) -> str:
    """A perfect completion (SFT targets, RMO): ``<think>reasoning</think><answer>[y1, ..., yn]</answer>``."""
    return f"<think>{reasoning}</think><answer>{format_values(targets, precision)}</answer>"
