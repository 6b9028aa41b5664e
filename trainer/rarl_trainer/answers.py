"""Shim: the answer grammar lives in ``rarl.answers``; remove once rewards.py, rmo.py and predict.py import it."""

from rarl.answers import find_answer_span, find_think_span, has_tag_structure, parse_answer

__all__ = ["find_answer_span", "find_think_span", "has_tag_structure", "parse_answer"]
