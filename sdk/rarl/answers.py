"""Parse the model's answers: ``<think>...</think><answer>[v1, ..., vn]</answer>``.

Everything here is pure Python (no torch, no numpy) and never raises on any text:
rewards and evaluation call it on arbitrary model output.

Rules (the reward and the metrics depend on them, so they are fixed and tested):

* Exactly one ``<answer>...</answer>`` block (tags are case-insensitive); zero blocks,
  an unclosed block or several blocks are rejected. Text outside the tags is ignored.
* Inside the block: a bracketed list ``[v1, ..., vn]``; for n = 1 a bare ``v`` is accepted too.
  Separators are commas, semicolons and/or whitespace; nothing else may appear (no units,
  no words): an answer the reward cannot verify is a parse failure.
* Numbers: ASCII digits, optional sign (``+``, ``-`` or the unicode minus U+2212), optional
  decimals (``3.5``, ``.5``, ``3.``) and an optional exponent (``1e2``). NaN and infinity
  (including an exponent that overflows) are rejected.
* Thousands separators: a comma is a thousands separator when it sits between digits with
  no space, the digits before it form a group of 1-3 digits starting the number, and it is
  followed by exactly three digits that are not followed by another digit (repeating for
  more groups). So ``[1,234]`` is one value 1234, ``[1, 234]`` and ``[1,23]`` are two values,
  ``[1,2345]`` is 1 and 2345. Models should write ``, `` (comma space) between values, as the
  prompt and the reference answers do.
* ``has_valid_format`` additionally requires exactly one ``<think>...</think>`` block that
  closes before the answer block opens, for every n (n = 1 included): the format reward asks
  for the full tag structure the prompt requests. ``parse_answer`` does not need the think
  block, so an answer without reasoning still gets its values scored (format reward 0).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "ParseResult",
    "find_answer_span",
    "find_think_span",
    "has_tag_structure",
    "has_valid_format",
    "parse_answer",
]

_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)

_SIGN = r"[+\-\u2212]?"
_GROUPED = r"[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])(?:\.[0-9]+)?"
_PLAIN = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_EXP = r"(?:[eE][+\-]?[0-9]+)?"
_NUMBER = re.compile(_SIGN + r"(?:" + _GROUPED + r"|" + _PLAIN + r")" + _EXP)
_SEPARATORS = frozenset(", ;\t\n\r\f\v\u00a0")


@dataclass(frozen=True)
class ParseResult:
    """Parsed values (None on failure) and, on failure, why."""

    values: list[float] | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.values is not None


def _fail(reason: str) -> ParseResult:
    return ParseResult(None, reason)


def _single_block_span(text: str, open_re: re.Pattern, close_re: re.Pattern) -> tuple[int, int] | None:
    """(start, end) of the content of the single closed block, or None if not exactly one."""
    opens = list(open_re.finditer(text))
    closes = list(close_re.finditer(text))
    if len(opens) != 1 or len(closes) != 1:
        return None
    start, end = opens[0].end(), closes[0].start()
    if end < start:
        return None
    return start, end


def find_answer_span(text: str) -> tuple[int, int] | None:
    """(start, end) of the content of the single answer block, or None if not exactly one closed block."""
    return _single_block_span(text, _ANSWER_OPEN, _ANSWER_CLOSE)


def find_think_span(text: str) -> tuple[int, int] | None:
    """(start, end) of the content of the single think block, or None if not exactly one closed block."""
    return _single_block_span(text, _THINK_OPEN, _THINK_CLOSE)


_FAST_CHARS = frozenset("0123456789.-+, ")


def _parse_simple(body: str) -> list[float] | None:
    """Fast path for the common ``1, 2.5, -3`` body; None hands over to the full tokenizer.

    Only taken when no comma is directly followed by a digit (no thousands-separator question)
    and every piece is a plain number, so it returns exactly what the tokenizer would.
    """
    if not _FAST_CHARS.issuperset(body) or re.search(r",[0-9]", body):
        return None
    values = []
    for raw in body.split(","):
        piece = raw.strip()
        if not piece or " " in piece:
            return None
        try:
            values.append(float(piece))
        except ValueError:
            return None
    return values


def _parse_numbers(body: str) -> tuple[list[float] | None, str | None]:
    """Tokenise a list body into numbers; every character must be a number or a separator."""
    simple = _parse_simple(body)
    if simple is not None:
        return simple, None
    return _tokenize_numbers(body)


def _tokenize_numbers(body: str) -> tuple[list[float] | None, str | None]:
    """The full tokenizer (thousands separators, exponents, unicode minus, any separators)."""
    values: list[float] = []
    pos, length = 0, len(body)
    while pos < length:
        while pos < length and body[pos] in _SEPARATORS:
            pos += 1
        if pos >= length:
            break
        match = _NUMBER.match(body, pos)
        if match is None:
            return None, f"not a number at {body[pos:pos + 12]!r}"
        end = match.end()
        if end < length and body[end] not in _SEPARATORS:
            return None, f"not a number at {body[pos:end + 12]!r}"
        token = match.group().replace("\u2212", "-").replace(",", "")
        try:
            value = float(token)
        except ValueError:  # pragma: no cover - the regex only lets floats through
            return None, f"not a number: {token!r}"
        if not math.isfinite(value):
            return None, f"non-finite value {token!r}"
        values.append(value)
        pos = end
    return values, None


def parse_answer(text: str, n: int) -> ParseResult:
    """Extract exactly ``n`` finite numbers from the answer block; never raises."""
    try:
        if not isinstance(text, str):
            return _fail("completion is not text")
        opens = len(_ANSWER_OPEN.findall(text))
        closes = len(_ANSWER_CLOSE.findall(text))
        if opens == 0 or closes == 0:
            return _fail("missing <answer>...</answer> tags")
        if opens > 1 or closes > 1:
            return _fail("several answer blocks")
        span = find_answer_span(text)
        if span is None:
            return _fail("</answer> before <answer>")
        body = text[span[0]:span[1]].strip()
        if body.startswith("[") and body.endswith("]"):
            body = body[1:-1]
        elif n != 1:
            return _fail(f"expected a list [v1, ..., v{n}]")
        if "[" in body or "]" in body:
            return _fail("nested or unbalanced brackets")
        values, reason = _parse_numbers(body)
        if values is None:
            return _fail(reason or "unparseable answer")
        if len(values) != n:
            return _fail(f"expected {n} values, got {len(values)}")
        return ParseResult(values, None)
    except Exception as exc:  # pragma: no cover - rewards must never raise
        return _fail(f"parser error: {type(exc).__name__}")


def has_tag_structure(text: str) -> bool:
    """One think block closed before one answer block (the count of numbers is not checked)."""
    if not isinstance(text, str):
        return False
    think = find_think_span(text)
    answer = find_answer_span(text)
    if think is None or answer is None:
        return False
    # The think block must close before the answer opens (answer[0] is where its content starts).
    return think[1] <= answer[0]


def has_valid_format(text: str, n: int) -> bool:
    """Full tag structure (one think block closed before one answer block) and exactly n numbers."""
    return has_tag_structure(text) and parse_answer(text, n).ok
