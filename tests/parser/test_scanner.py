"""File-level rules (section A of the feature reference), exec-form detection and the dump's Go
quoting, on small inputs; plus big inputs that must parse (a hang guard, not a timing)."""

from __future__ import annotations

import pytest

import parser
from parser.gojson import MAX_DEPTH, NotStringArray, parse_json_array
from parser.gotext import go_quote, parse_duration, quote_slice
from pybuild.errors import ParseErrors


def dump(text: str | bytes) -> str:
    return parser.dump(parser.parse_nodes(text))


def errors(text: str | bytes) -> list[str]:
    with pytest.raises(ParseErrors) as info:
        parser.parse_nodes(text)
    return list(info.value.lines())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("FROM a\nRUN echo hello\\\n  world\n", '(from "a")\n(run "echo hello  world")\n'),
        ("RUN a \\ \t\n b\n", '(run "a  b")\n'),  # blanks after the escape are allowed
        ("RUN a\\\\\n", '(run "a\\\\\\\\")\n'),  # an escaped escape does not continue
        ("RUN a\\\\\\\nb\n", '(run "a\\\\\\\\\\\\")\n(b "")\n'),  # BuildKit's regex misses `\\\` too
        ("RUN a\\\n# c\nb\n", '(run "ab")\n'),
        ("RUN a\\\n  # c \\\n b\n", '(run "a b")\n'),  # an indented comment line is dropped as well
        ("RUN a\\", '(run "a")\n'),  # a continuation at the end of the file
        ("RUN a\\\r\n b\r\n", '(run "a b")\n'),
        ("RUN a\r\r\n", '(run "a")\n'),  # every trailing CR goes
        ("RUN a\rb\n", '(run "a\\rb")\n'),  # an inner CR stays
        ("\ufeffRUN a\n\ufeffRUN b\n", '(run "a")\n(\ufeffrun "")\n'),  # only the first line's BOM
        ("RUN\u00a0a\n", '(run\u00a0a "")\n'),  # keyword ends at an ASCII blank only
        ("  RUN   a  \n", '(run "a")\n'),
    ],
)
def test_lines(text: str, expected: str) -> None:
    assert dump(text) == expected


def test_empty_continuation_line_warns() -> None:
    tree = parser.parse_nodes("RUN a\\\n\n  \nb\n")
    assert [(w.rule, w.line, w.message) for w in tree.warnings] == [
        ("NoEmptyContinuation", 4, "Empty continuation line found in: RUN ab")]


def test_check_directive_skips_warnings() -> None:
    text = "# check=skip=NoEmptyContinuation,JSONArgsRecommended\nFROM a\nRUN a\\\n\nb\nCMD x\n"
    assert parser.parse_buildfile(text).warnings == ()
    assert parser.parse_buildfile("# check=skip=all\nFROM A AS B\n").warnings == ()
    bf = parser.parse_buildfile("# check=error=true\nFROM a\n")
    assert bf.directives.check_config.error


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "file with no instructions"),
        ("# only\n\n   # comments\n", "file with no instructions"),
        ("# escape=\\\\\nFROM a\n", "invalid escape token '\\\\' does not match ` or \\"),
        ("# syntax=a\n# SYNTAX=b\nFROM a\n", "only one syntax parser directive can be used"),
        ("# check=skip\nFROM a\n", 'invalid check option "skip"'),
        ("FROM a\nRUN x\x00\n", "NUL byte in Buildfile"),
        (b"FROM a\nRUN \xc3\x28\n", "invalid UTF-8 (byte 0xc3)"),
        ("FROM a\nRUN " + "é" * 32766 + "\n", "dockerfile line greater than max allowed size of 65535"),
        ("FROM a\nCMD [\"a\", false]\n", "when using JSON array syntax, arrays must be comprised of strings only"),
        ("FROM a\nRUN <<EOF\nbody\n", "unterminated heredoc"),
        ("FROM a\nRUN <<EOF\nEOF \n", "unterminated heredoc"),  # the terminator must be the whole line
    ],
)
def test_node_level_errors(text: str | bytes, message: str) -> None:
    assert any(line.endswith(": " + message) for line in errors(text)), errors(text)


def test_line_limit_is_65535_bytes() -> None:
    assert dump("RUN " + "a" * 65531 + "\n") == '(run "' + "a" * 65531 + '")\n'
    assert errors("RUN " + "a" * 65532 + "\n")


def test_directives_only_in_the_leading_block() -> None:
    assert parser.parse_nodes("# syntax=x\n\n# escape=`\nFROM a\n").directives.escape == "\\"
    tree = parser.parse_nodes("  #  Escape  =  `  \n# Syntax=img:1 --flag\nFROM a\n")
    assert (tree.directives.escape, tree.directives.syntax) == ("`", "img:1 --flag")
    assert parser.parse_nodes("FROM a\n# escape=`\nRUN x`\n").nodes[1].args == ("x`",)


def test_heredoc_bodies_are_raw() -> None:
    tree = parser.parse_nodes("FROM a\nRUN <<EOF\n# not a comment \\\n\n  EOF\nEOF\n")
    (body,) = tree.nodes[1].heredocs
    assert body.content == "# not a comment \\\n\n  EOF\n" and tree.nodes[1].end_line == 6


def test_chomped_heredoc() -> None:
    tree = parser.parse_nodes("FROM a\nRUN <<-X\n\t\tone\n\t two\n\tX\n")
    (body,) = tree.nodes[1].heredocs
    assert body.content == "\t\tone\n\t two\n" and body.chomped == "one\n two\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        ('["a", "b"]', ["a", "b"]),
        ('  [ ]  ', []),
        ('["\\u00e9\\ud83d\\ude00", "\\ud800x"]', ["é😀", "\ufffdx"]),  # a lone surrogate: U+FFFD, as Go
        ("['a']", None),
        ('["a",]', None),
        ('["a"] x', None),
        ("[NaN]", None),  # Python's json would take it; Go's does not
        ("[1e999]", None),  # a float64 overflow fails Go's decoder: shell form, not an error
        ('{"a": 1}', None),
        ("[" * MAX_DEPTH + "]" * MAX_DEPTH, NotStringArray),  # deep but valid for Go
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), None),  # too deep for Go: shell form
        ("[" * 3000 + "]" * 2999, None),  # deep and invalid
    ],
)
def test_exec_form_detection(text: str, expected: object) -> None:
    if expected is NotStringArray:
        with pytest.raises(NotStringArray):
            parse_json_array(text)
    else:
        assert parse_json_array(text) == expected


@pytest.mark.parametrize(
    "value, quoted",
    [
        ("plain", '"plain"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("\x00\x07\x08\x0c\n\r\t\x0b\x1b\x7f", '"\\x00\\a\\b\\f\\n\\r\\t\\v\\x1b\\x7f"'),
        ("♥ é", '"♥ é"'),
        ("\u00a0\u200b\ufeff", '"\\u00a0\\u200b\\ufeff"'),
        ("\U000e0001", '"\\U000e0001"'),
        (b"\xff".decode("utf-8", "surrogateescape"), '"\\xff"'),
    ],
)
def test_go_quote(value: str, quoted: str) -> None:
    assert go_quote(value) == quoted


def test_flag_slice_quoting() -> None:
    assert quote_slice(["--from=build", "--chown=1:1"]) == '["--from=build" "--chown=1:1"]'


def test_flags_are_read_byte_by_byte_like_buildkit() -> None:
    # BuildKit builds flag words from single bytes, so non-ASCII comes out as Latin-1 mojibake
    assert parser.parse_nodes("COPY --chown=josé a b\n").nodes[0].flags == ("--chown=josÃ©",)


@pytest.mark.parametrize(
    "text, ns",
    [("0", 0), ("1h30m", 5_400_000_000_000), ("1.5s", 1_500_000_000), ("-2ms", -2_000_000), ("300us", 300_000),
     ("1µs", 1_000), (".5m", 30_000_000_000)],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1..5s", "--1s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_ten_megabytes_and_a_hundred_thousand_continuations_parse() -> None:
    lines = "RUN echo start \\\n" + "    && echo more words on this line \\\n" * 100_000 + "    && true\n"
    text = "FROM scratch\n" + lines + "ENV " + " ".join(f"K{i}=v{i}" for i in range(5000)) + "\n"
    text += "COPY " + " ".join(f"src/{i}" for i in range(5000)) + " /dst/\n"
    assert len(text) > 3_500_000
    big = text + "RUN " + "\\\n".join("y" * 65_000 for _ in range(100)) + "\n"
    assert len(big) > 10_000_000
    bf = parser.parse_buildfile(big)
    run, env, copy, last = bf.stages[0].instructions
    assert isinstance(run, parser.Run) and run.command is not None and run.command[0].endswith("&& true")
    assert isinstance(env, parser.Env) and len(env.pairs) == 5000
    assert isinstance(copy, parser.Copy) and len(copy.sources) == 5000
    assert isinstance(last, parser.Run) and last.end_line == big.count("\n")


@pytest.mark.parametrize(
    "text, syntax",
    [
        ("# syntax=docker/dockerfile:1.7\nFROM a\n", "docker/dockerfile:1.7"),
        ("#!/usr/bin/env buildfile\n# syntax=img:1\nFROM a\n", "img:1"),  # after a shebang
        ("// syntax=img:2\nFROM a\n", "img:2"),  # BuildKit's DetectSyntax reads // comments too
        ('{"syntax": "img:3"}\n', "img:3"),  # ... and a JSON object
        ("FROM a\n# syntax=late\n", None),
    ],
)
def test_syntax_directive(text: str, syntax: str | None) -> None:
    assert parser.parse_nodes(text).directives.syntax == syntax


def test_buildkit_parse_words_cases() -> None:
    from parser.arguments import parse_words

    cases = {
        "foo": ["foo"], "foo bar": ["foo", "bar"], "foo\\ bar": ["foo\\ bar"], "foo=bar": ["foo=bar"],
        "foo bar 'abc xyz'": ["foo", "bar", "'abc xyz'"], 'foo bar "abc xyz"': ["foo", "bar", '"abc xyz"'],
        "àöû": ["àöû"], 'föo bàr "âbc xÿz"': ["föo", "bàr", '"âbc xÿz"'],
    }
    for text, words in cases.items():
        assert parse_words(text, "\\") == words


def test_buildkit_empty_continuation_warnings() -> None:
    text = ("\nFROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n    following \\\n\n"
            "    more\n\nRUN another \\\n\n    thing\n\nRUN non-indented \\\n# this is a comment\n"
            "   after-comment\n\nRUN indented \\\n    # this is an indented comment\n    comment\n\t")
    warnings = parser.parse_nodes(text).warnings
    assert [w.message for w in warnings] == ["Empty continuation line found in: RUN something     following     more",
                                            "Empty continuation line found in: RUN another     thing"]


def test_buildkit_scanner_error() -> None:
    text = "\n\t\tFROM image\n\t\tLABEL test=" + "a" * 65536 + "\n"
    assert errors(text) == ["Buildfile:3:1: dockerfile line greater than max allowed size of 65535"]


def test_check_directive_uses_the_first_word_like_buildkit() -> None:
    tree = parser.parse_nodes("#check = skip=all // opts\nFROM busybox\n")
    assert tree.directives.check == "skip=all // opts" and tree.directives.check_config.skip_all
    after_shebang = parser.parse_nodes("#!/bin/sh\n# check = skip=all\nFROM busybox\n")
    assert after_shebang.directives.check_config.skip_all
    assert not parser.parse_nodes("#!/bin/sh\n\n# check = skip=all\nFROM b\n").directives.check_config.skip_all


def test_text_read_with_surrogateescape_reports_the_bad_bytes() -> None:
    text = b"FROM a\nRUN \xff\n".decode("utf-8", "surrogateescape")
    assert errors(text) == ["Buildfile:2:5: invalid UTF-8 (byte 0xff)"]
