"""Answer parsing: every robustness and rejection rule of rarl.answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rarl.answers import has_valid_format, parse_answer


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("<think>x</think><answer>[3, 5]</answer>", 2, [3.0, 5.0]),
        ("<answer>\n  [ 3 ,\n 5 ]\n</answer>", 2, [3.0, 5.0]),  # whitespace and newlines
        ("<answer>[\u22122.5, +3]</answer>", 2, [-2.5, 3.0]),  # unicode minus and plus
        ("<answer>[.5, 3., 1e1]</answer>", 3, [0.5, 3.0, 10.0]),
        ("<answer>7</answer>", 1, [7.0]),  # bare value for n = 1
        ("<answer>[7]</answer>", 1, [7.0]),
        ("<answer>[1,234]</answer>", 1, [1234.0]),  # thousands separator
        ("<answer>[12,345,678.5]</answer>", 1, [12345678.5]),
        ("<answer>[1, 234]</answer>", 2, [1.0, 234.0]),  # comma + space separates values
        ("<answer>[1,23]</answer>", 2, [1.0, 23.0]),
        ("<answer>[1,2345]</answer>", 2, [1.0, 2345.0]),
        ("<answer>[1;2 3]</answer>", 3, [1.0, 2.0, 3.0]),
        ("I think so. <ANSWER>[4, 2]</ANSWER> done!", 2, [4.0, 2.0]),  # text outside, case-insensitive tags
    ],
)
def test_parse_accepts(text: str, n: int, expected: list[float]) -> None:
    result = parse_answer(text, n)
    assert result.reason is None
    assert result.values == expected


@pytest.mark.parametrize(
    ("text", "n", "reason_part"),
    [
        ("[3, 5]", 2, "missing"),
        ("<answer>[3, 5]", 2, "missing"),
        ("<answer>[3, 5]</answer><answer>[3, 5]</answer>", 2, "several"),
        ("<answer>[3, 5, 6]</answer>", 2, "expected 2 values"),
        ("<answer>[3]</answer>", 2, "expected 2 values"),
        ("<answer>3, 5</answer>", 2, "expected a list"),
        ("<answer>[nan, 3]</answer>", 2, "not a number"),
        ("<answer>[inf, 3]</answer>", 2, "not a number"),
        ("<answer>[1e999, 3]</answer>", 2, "non-finite"),
        ("<answer>[3 years, 5]</answer>", 2, "not a number"),
        ("<answer>[1.2.3]</answer>", 1, "not a number"),
        ("<answer>[[3, 5]]</answer>", 2, "brackets"),
        ("</answer>[3]<answer>", 1, "before"),
        ("<answer>[\u0663]</answer>", 1, "not a number"),  # non-ASCII digit
        ("<answer></answer>", 1, "expected 1 values"),
    ],
)
def test_parse_rejects(text: str, n: int, reason_part: str) -> None:
    result = parse_answer(text, n)
    assert result.values is None
    assert result.reason is not None and reason_part in result.reason


def test_format_requires_think_before_answer() -> None:
    assert has_valid_format("<think>a</think><answer>[1, 2]</answer>", 2)
    assert has_valid_format("<think></think>\n<answer>4</answer>", 1)
    assert not has_valid_format("<answer>4</answer>", 1)  # think required for n = 1 too
    assert not has_valid_format("<answer>4</answer><think>a</think>", 1)  # wrong order
    assert not has_valid_format("<think>a<think>b</think><answer>4</answer>", 1)
    assert not has_valid_format("<think>a</think><answer>[1, 2, 3]</answer>", 2)
    # parse_answer itself does not need the think block
    assert parse_answer("<answer>4</answer>", 1).values == [4.0]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=16))
def test_parser_never_raises(text: str, n: int) -> None:
    result = parse_answer(text, n)
    assert (result.values is None) != (result.reason is None)
    assert isinstance(has_valid_format(text, n), bool)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=16))
def test_roundtrip_of_formatted_lists(values: list[float]) -> None:
    text = "<think>t</think><answer>[" + ", ".join(repr(v) for v in values) + "]</answer>"
    assert parse_answer(text, len(values)).values == values


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789.-+, ", max_size=20))
def test_fast_path_agrees_with_tokenizer(body: str) -> None:
    from rarl.answers import _parse_simple, _tokenize_numbers

    fast = _parse_simple(body)
    if fast is not None:
        assert fast == _tokenize_numbers(body)[0]
