"""Query sampling and chat messages."""

from __future__ import annotations

import pytest

from rarl.answers import has_valid_format, parse_answer
from rarl.api.types import DatasetSpec, TargetSpec
from rarl_trainer.data import Item
from rarl_trainer.prompts import (
    QuerySampler,
    balanced_strata,
    build_messages,
    format_value,
    prompt_for,
    reference_answer,
    render_instruction,
)

TARGET = TargetSpec(min=1, max=116, unit="years", precision=1)


def _items(targets: list[float]) -> list[Item]:
    return [Item(f"i{k}", f"/img/{k}.png", f"text {k}", t) for k, t in enumerate(targets)]


def test_sampler_distinct_targets_when_possible() -> None:
    items = _items([1] * 50 + [2] * 50 + [3, 4, 5, 6, 7, 8])  # rare targets
    sampler = QuerySampler(items, [1, 2, 4, 8], rng_seed=0)
    sizes = set()
    for _ in range(300):
        q = sampler.sample()
        sizes.add(q.n)
        assert len(set(q.targets)) == q.n
        assert len({it.id for it in q.items}) == q.n
    assert sizes == {1, 2, 4, 8}


def test_sampler_allows_ties_when_needed_and_is_seeded() -> None:
    items = _items([1, 1, 2, 2, 2])
    q = QuerySampler(items, [4], rng_seed=1).sample()
    assert q.n == 4 and set(q.targets) == {1, 2} and len({it.id for it in q.items}) == 4
    a = [q.targets for q in QuerySampler(_items(list(range(30))), [2, 4], 9).sample_many(20)]
    s = QuerySampler(_items(list(range(30))), [2, 4], 9)
    state = s.get_state()
    b = [q.targets for q in s.sample_many(20)]
    s.set_state(state)
    assert a == b == [q.targets for q in s.sample_many(20)]


def test_balanced_sampling_draws_every_level_equally_often_on_skewed_data() -> None:
    # Two thirds of the items are negative, like AFINN's words: uniform draws follow that skew,
    # balanced draws pick a level band first.
    target = TargetSpec(min=-5, max=5, precision=1, levels=["negative", "positive"])
    items = _items([-2.0] * 600 + [-4.0] * 60 + [3.0] * 330)
    strata = balanced_strata(items, target)
    assert strata == [0] * 660 + [1] * 330
    uniform = QuerySampler(items, [1], rng_seed=0).sample_many(2000)
    balanced = QuerySampler(items, [1], rng_seed=0, strata=strata).sample_many(2000)
    share_negative = [sum(q.targets[0] < 0 for q in qs) / len(qs) for qs in (uniform, balanced)]
    assert abs(share_negative[0] - 2 / 3) < 0.04
    assert abs(share_negative[1] - 1 / 2) < 0.04
    # Within a level, items stay uniform (the rare -4 words keep their share of the negative half).
    rare = sum(q.targets[0] == -4.0 for q in balanced) / sum(q.targets[0] < 0 for q in balanced)
    assert abs(rare - 60 / 660) < 0.03
    # Lists still get distinct targets; without levels every distinct value is its own stratum.
    assert all(len(set(q.targets)) == 2 for q in QuerySampler(items, [2], 1, strata=strata).sample_many(200))
    no_levels = TargetSpec(min=-5, max=5, precision=1)
    assert balanced_strata(items, no_levels) == [1] * 600 + [0] * 60 + [2] * 330


def test_balanced_per_step_sampling_covers_every_level_in_every_deck() -> None:
    """Dealt strata: any run of draws as long as the number of levels holds each level once (per step,
    not only on average over the run), while items inside a level stay uniform."""
    target = TargetSpec(min=-5, max=5, precision=1, levels=["negative", "neutral", "positive"])
    items = _items([-4.0] * 30 + [0.0] * 600 + [3.0] * 330)
    strata = balanced_strata(items, target)
    assert sorted(set(strata)) == [0, 1, 2]
    dealt = QuerySampler(items, [1], rng_seed=0, strata=strata, deal=True).sample_many(300)
    levels = [strata[items.index(q.items[0])] for q in dealt]
    assert all(sorted(levels[i:i + 3]) == [0, 1, 2] for i in range(0, 300, 3))
    drawn = QuerySampler(items, [1], rng_seed=0, strata=strata).sample_many(300)  # balanced only on average
    levels = [strata[items.index(q.items[0])] for q in drawn]
    assert not all(sorted(levels[i:i + 3]) == [0, 1, 2] for i in range(0, 300, 3))
    with pytest.raises(ValueError, match="deal needs strata"):
        QuerySampler(items, [1], deal=True)


def test_whole_split_evaluation_asks_every_item_once_in_lists_with_distinct_targets() -> None:
    from rarl_trainer.evaluation import eval_queries

    items = _items([float(v % 13) for v in range(41)])  # 13 distinct targets, 41 items
    queries = eval_queries(items, [1, 2, 4], "all", seed=3)
    by_n = {n: [q for q in queries if q.n == n] for n in (1, 2, 4)}
    assert sorted(it.id for q in by_n[1] for it in q.items) == sorted(it.id for it in items)
    for n, count in ((2, 20), (4, 10)):
        asked = [it.id for q in by_n[n] for it in q.items]
        assert len(by_n[n]) == count and len(set(asked)) == len(asked) == count * n
        assert all(len(set(q.targets)) == n for q in by_n[n])
    assert queries == eval_queries(items, [1, 2, 4], "all", seed=3)  # the same at every evaluation
    assert [q.targets for q in by_n[2]] != [q.targets for q in eval_queries(items, [2], "all", seed=4)]
    # Too few distinct targets left for the last lists: they take a tie rather than drop items.
    two_values = eval_queries(_items([1.0] * 6 + [2.0] * 2), [2], "all", seed=0)
    assert sorted(tuple(sorted(q.targets)) for q in two_values) == [(1.0, 1.0), (1.0, 1.0), (1.0, 2.0), (1.0, 2.0)]


def test_build_messages_images_and_text() -> None:
    items = _items([20, 30])
    msgs = build_messages(items, TARGET, None, "image", "the age of the person")
    assert len(msgs) == 1 and msgs[0]["role"] == "user"
    content = msgs[0]["content"]
    assert content[:4] == [
        {"type": "text", "text": "Image 1:"}, {"type": "image", "image": "/img/0.png"},
        {"type": "text", "text": "Image 2:"}, {"type": "image", "image": "/img/1.png"},
    ]
    instruction = content[-1]["text"]
    assert "years" in instruction and "1 to 116" in instruction and "[v1, v2]" in instruction
    text_msgs = build_messages(items, TARGET, "Rate {n} items ({what}) {{json}}", "text", "stars")
    assert text_msgs[0]["content"][0] == {"type": "text", "text": "Item 1: text 0"}
    assert text_msgs[0]["content"][-1]["text"] == "Rate 2 items (stars) {{json}}"


def test_default_templates_per_format() -> None:
    coco = DatasetSpec(format="coco-rem", train="/x", category="person")
    template, what = prompt_for(coco)
    text = render_instruction(template, 1, coco.target, what)
    assert "'person'" in text and "objects" in text and "0 to 50" in text and "the image" in text
    ava = DatasetSpec(format="ava", train="/x", instruction="Score {n} photos: {what} {min}-{max} {unit} {format}")
    template, what = prompt_for(ava)
    rendered = render_instruction(template, 8, ava.target, what)
    assert rendered.startswith("Score 8 photos: the aesthetic") and "1.00-10.00 points" in rendered
    assert "v1, v2, ..., v8" in rendered


def test_reference_answer_is_a_perfect_valid_completion() -> None:
    text = reference_answer([3.456, 7.0], 0.01)
    assert has_valid_format(text, 2) and parse_answer(text, 2).values == [3.46, 7.0]
    assert reference_answer([5.0], 1.0).endswith("<answer>[5]</answer>")
    assert format_value(-0.0001, 0.1) == "0.0" and format_value(2.5, 0.5) == "2.5" and format_value(1234, 1) == "1234"


AFINN_LIKE = TargetSpec(min=-5, max=5, precision=1, levels=["very negative", "negative", "mildly negative",
                                                              "mildly positive", "positive", "very positive"])


def test_levels_split_the_scale_into_equal_bands_lowest_first() -> None:
    from rarl_trainer.prompts import level_of

    bands = {v: level_of(v, AFINN_LIKE) for v in range(-5, 6)}
    assert bands == {-5: "very negative", -4: "very negative", -3: "negative", -2: "negative",
                     -1: "mildly negative", 0: "mildly positive", 1: "mildly positive", 2: "positive",
                     3: "positive", 4: "very positive", 5: "very positive"}
    assert level_of(-9, AFINN_LIKE) == "very negative" and level_of(9, AFINN_LIKE) == "very positive"


def test_sft_reasoning_names_each_items_level_declared_or_from_the_instructions_scale_words() -> None:
    """Without target.levels (a user's own JSONL declares only min, max, precision), the words the instruction
    gives the ends of the scale are the two levels; with neither, the fixed sentence."""
    from rarl_trainer.prompts import DEFAULT_REASONING, level_words, reference_reasoning

    text = reference_answer([-2, 4], 1, reference_reasoning([-2, 4], AFINN_LIKE))
    assert text == "<think>Item 1 is negative. Item 2 is very positive.</think><answer>[-2, 4]</answer>"
    assert parse_answer(text, 2).values == [-2, 4]
    valence = TargetSpec(min=-4, max=4, precision=0.1)
    instruction = "Rate {items} from {min} (very negative) to {max} (very positive). Reply as {format}"
    assert level_words(valence, instruction) == ("very negative", "very positive")
    assert reference_reasoning([-3.9, -0.1, 0.3, 4.0], valence, instruction) == (
        "Item 1 is very negative. Item 2 is very negative. Item 3 is very positive. Item 4 is very positive.")
    assert level_words(valence, "from {min} (awful) to {max} (great)") == ("awful", "great")
    assert level_words(AFINN_LIKE, instruction) == tuple(AFINN_LIKE.levels)  # declared levels win
    for plain in (None, "Rate {items} from {min} to {max}.", "from {min} (bad) to {max} (bad)"):
        assert level_words(valence, plain) is None
        assert reference_reasoning([3, 7], TARGET, plain) == DEFAULT_REASONING


def test_sft_completions_carry_the_level_reasoning() -> None:
    """The dataset an sft stage trains on: completions differ by item (the fixed sentence did not)."""
    from rarl_trainer.prompts import Query
    from rarl_trainer.queries import QueryTable
    from rarl_trainer.sft import sft_dataset

    spec = DatasetSpec(format="jsonl", modality="text", train="x.jsonl", target=AFINN_LIKE)
    items = _items([-4, 3])
    table = QueryTable([Query((items[0],)), Query((items[1], items[0]))], spec, "text", True)
    rows = sft_dataset(table, spec)
    assert [r["completion"][0]["content"] for r in rows] == [
        "<think>Item 1 is very negative.</think><answer>[-4]</answer>",
        "<think>Item 1 is positive. Item 2 is very negative.</think><answer>[3, -4]</answer>",
    ]
    # A user's data without levels: the instruction's scale words reach the completions.
    plain = spec.model_copy(update={"target": TargetSpec(min=-5, max=5, precision=1),
                                    "instruction": "Rate {items} from {min} (awful) to {max} (great). {format}"})
    rows = sft_dataset(QueryTable(table.queries, plain, "text", True), plain)
    assert rows[1]["completion"][0]["content"] == "<think>Item 1 is great. Item 2 is awful.</think><answer>[3, -4]</answer>"
    assert isinstance(rows[0]["prompt"][0]["content"], str)  # string_content: the template's form
