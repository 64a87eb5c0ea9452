"""Finding heredoc markers (`<<EOF`, `<<-EOF`, `3<<'EOF'`, `<< EOF`) in an instruction line.

As BuildKit does it: the line is split into words by the shell lexer with quotes, escapes and
unset variables kept as written (and `<<` keeping the blanks after it in its word), and each word
of the form `[digits]<<[-][blanks]rest` is a marker if `rest` lexes to exactly one word. The
delimiter is that word with quotes removed; if removing quotes changed anything, the body is not
to be expanded. Delimiters are always read with `\\` as the escape character, whatever the
`# escape=` directive says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from parser.shell import LexError, lex

_MARKER = re.compile(r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)", re.S)
_MAX_FD = (1 << 64) - 1


@dataclass(frozen=True)
class Marker:
    name: str
    fd: int
    chomp: bool
    expand: bool


class HeredocError(ValueError):
    """A marker word the lexer cannot read consistently."""


def parse_marker(word: str) -> Marker | None:
    """The heredoc a single source word introduces, or None (BuildKit's ParseHeredoc)."""
    m = _MARKER.fullmatch(word)
    if m is None or not m.group(3):
        return None
    fd_text, dash, rest = m.groups()
    try:
        words = lex(rest, {}, skip_unset=True)[1]
    except LexError as e:
        raise HeredocError(str(e)) from None
    if len(words) != 1:
        return None
    try:
        raw_words = lex(rest, {}, skip_unset=True, raw_quotes=True)[1]
    except LexError as e:
        raise HeredocError(str(e)) from None
    if len(raw_words) != len(words):
        raise HeredocError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    name, raw = words[0], raw_words[0]
    expand = name.count("'") + name.count('"') == raw.count("'") + raw.count('"')
    fd = min(int(fd_text), _MAX_FD) if fd_text else 0
    return Marker(name=name, fd=fd, chomp=dash == "-", expand=expand)


def markers_in_line(line: str) -> list[Marker]:
    """Every heredoc marker of an instruction line, in order (BuildKit's heredocsFromLine)."""
    try:
        words = lex(line, {}, raw_quotes=True, raw_escapes=True, skip_unset=True)[1]
    except LexError:
        return []  # BuildKit ignores a line it cannot split: no heredocs then
    found = []
    for word in words:
        marker = parse_marker(word)
        if marker is not None:
            found.append(marker)
    return found
