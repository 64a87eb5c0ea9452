"""BuildKit's shell-lexer tables (envVarTest, wordsTest, processWordCases.json) and our own cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parser.shell import expand_heredoc, expand_word, expand_words
from pybuild.errors import ParseError
from tests.conftest import CONFORMANCE

SHELL = CONFORMANCE / "buildkit-shell"


def _table(name: str) -> Path:
    path = SHELL / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the conformance data lives in ../shared)")
    return path


def _env_var_cases() -> list[tuple[str, str]]:
    path = SHELL / "envVarTest"
    if not path.exists():
        return []
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        platform, source, expected = (field.strip() for field in line.split("|"))
        if platform in ("A", "U"):
            cases.append((source, expected))
    return cases


ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


@pytest.mark.parametrize("source, expected", _env_var_cases() or [pytest.param("", "", marks=pytest.mark.skip("envVarTest absent"))])
def test_env_var_table(source: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(ParseError):
            expand_word(source, ENV)
    else:
        assert expand_word(source, ENV) == expected


def test_words_table() -> None:
    env: dict[str, str] = {}
    checked = 0
    for line in _table("wordsTest").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("ENV "):
            key, _, value = line[3:].lstrip(" ").partition("=")
            env[key] = value
            continue
        source, expected_text = line.split("|")
        expected = expected_text.lstrip(" ").split(",")
        try:
            got = expand_words(source.strip(), env)
        except ParseError:
            got = ["error"]
        assert got == expected, line
        checked += 1
    assert checked > 20


def test_process_word_cases() -> None:
    cases = json.loads(_table("processWordCases.json").read_text(encoding="utf-8"))
    assert len(cases) == 47
    for case in cases:
        if case["expectedErr"]:
            with pytest.raises(ParseError):
                expand_word(case["input"], case["envs"])
        else:
            assert expand_word(case["input"], case["envs"]) == case["expected"], case


@pytest.mark.parametrize(
    "source, env, expected",
    [
        ("${a}", {"a": "$b \\1"}, "$b \\1"),  # a value is data, never re-expanded
        ("${a//x/\\$0}", {"a": "xa"}, "\\xa"),  # ReplaceAllString expands $0 to the match
        ("${a/x/\\$0}", {"a": "xa"}, "\\$0a"),  # ... the first-match form does not
        ("${a//x/${0}}", {"a": "xa"}, "a"),  # the replacement is expanded first: ${0} is unset
        ("${a/?/-}", {"a": "\nb"}, "\n-"),  # ? never matches a newline (RE2's .)
        ("${a%%.*}", {"a": "x.y.z"}, "x"),
        ("${a%.*}", {"a": "x.y.z"}, "x.y"),
        ("${a##*/}", {"a": "/usr/local/bin"}, "bin"),
        ("${a#*/}", {"a": "/usr/local/bin"}, "usr/local/bin"),
        ("\ufeffabc", {}, "abc"),  # Go's text/scanner skips a leading BOM
    ],
)
def test_expand_word_extras(source: str, env: dict[str, str], expected: str) -> None:
    assert expand_word(source, env) == expected


def test_backtick_escape() -> None:
    assert expand_word("a`$b`\\c", {"b": "x"}, escape="`") == "a$b\\c"


def test_expand_words_splits_expanded_values_but_not_quoted_ones() -> None:
    env = {"P": "80 443/udp"}
    assert expand_words("$P 8080", env) == ["80", "443/udp", "8080"]
    assert expand_words('"$P" 8080', env) == ["80 443/udp", "8080"]


def test_heredoc_body_keeps_quotes() -> None:
    assert expand_heredoc("echo '$A' \"$A\"\n", {"A": "x"}) == "echo 'x' \"x\"\n"


def test_error_names_the_word() -> None:
    with pytest.raises(ParseError, match=r'failed to process "\$\{a:\?gone\}": a: gone'):
        expand_word("${a:?gone}", {})
