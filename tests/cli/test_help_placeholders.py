"""``rarlctl --help`` and every verb's help name their values as a user types them (issue 15, item 9).

Through the installed console script: typer's default placeholders (``<list[str]>``, ``<str>`` for a
file) are Python types, not what the option takes.
"""

from __future__ import annotations

import re

import pytest

VERBS_WITH_OPTIONS = {
    "submit": ["-f, --filename FILE", "--timeout SECONDS"],
    "list": ["-l, --selector KEY=VALUE", "--interval SECONDS"],
    "logs": ["--node INDEX", "--attempt K"],
    "wait": ["--timeout SECONDS", "--for PHASES"],
    "fetch": ["-d, --dest DIR"],
    "run": ["-f, --filename FILE"],
    "validate": ["-f, --filename FILE"],
    "init": ["-e, --example NAME", "-f, --file FILE"],
    "eval": ["-p, --predictions FILE", "-o, --output table|json|yaml", "--precision STEP"],
    "predict": ["-f, --filename FILE", "--data LOCATION", "--list-size N", "--out FILE"],
}


def _verbs(rarlctl_proc) -> list[str]:
    res = rarlctl_proc("--help")
    assert res.code == 0, res
    commands = res.out.split("Commands:", 1)[1]
    return [line.split()[0] for line in commands.splitlines() if line.strip()]


def _option_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("-")]


def test_every_verb_help_has_no_python_type_placeholders(rarlctl_proc):
    verbs = _verbs(rarlctl_proc)
    assert {"submit", "get", "validate", "predict", "eval"} <= set(verbs)
    for verb in verbs:
        res = rarlctl_proc(verb, "--help")
        assert res.code == 0, (verb, res)
        assert "<list[" not in res.out, (verb, res.out)
        for line in _option_lines(res.out):
            assert "{" not in line, (verb, line)
            assert not re.search(r"<(str|int|float|path|list\[\w+\])>", line), (verb, line)


@pytest.mark.parametrize("verb", sorted(VERBS_WITH_OPTIONS))
def test_options_show_what_they_take(rarlctl_proc, verb):
    res = rarlctl_proc(verb, "--help")
    assert res.code == 0, res
    flat = re.sub(r"\s+", " ", res.out)
    for shown in VERBS_WITH_OPTIONS[verb]:
        assert shown in flat, (verb, shown, res.out)


def test_arguments_read_as_typed(rarlctl_proc):
    """The usage line and the Arguments section show NAME, not typer's {NAME} and NAME <str>; no reST markup."""
    for verb in _verbs(rarlctl_proc):
        res = rarlctl_proc(verb, "--help")
        assert res.code == 0, (verb, res)
        usage = res.out.splitlines()[0]
        assert "{" not in usage and "<" not in usage, (verb, usage)
        arguments = res.out.split("Arguments:", 1)[1].split("Options:", 1)[0] if "Arguments:" in res.out else ""
        assert not re.search(r"<\w+>", arguments), (verb, arguments)
        assert "``" not in res.out, (verb, res.out)
    get = rarlctl_proc("get", "--help").out
    assert get.splitlines()[0] == "Usage: rarlctl get [OPTIONS] NAME"
    assert re.search(r"^\s+NAME\s+Job name\.", get, re.M), get
