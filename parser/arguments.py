"""One logical line to a parsed instruction line: keyword, builder flags and argument words.

The keyword/flags/arguments split is the Lark grammar's (`buildfile.lark`); what the argument
text becomes depends on the keyword, as BuildKit's line parsers (`line_parsers.go`) decide:

| keywords                              | argument words                                      |
|---------------------------------------|-----------------------------------------------------|
| RUN, CMD, ENTRYPOINT, SHELL           | JSON array items, else the whole text as one word   |
| COPY, ADD, VOLUME                     | JSON array items, else split on ASCII blanks        |
| FROM, EXPOSE                          | split on ASCII blanks                               |
| ENV, LABEL                            | (key, value, "=" or "") triples                     |
| ARG                                   | words, quotes kept                                  |
| MAINTAINER, STOPSIGNAL, USER, WORKDIR | the whole text as one word                          |
| HEALTHCHECK                           | the type word, then as CMD                          |
| ONBUILD                               | a nested instruction line                           |
| anything else                         | one empty word                                      |

Nothing is expanded and no quotes are removed here (except in flags); the typed level and the
builder do that with `parser.shell`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache

from parser.gojson import NotStringArray, parse_json_array
from parser.gotext import BYTE_SPACES, GO_SPACES, go_quote, trim_space
from parser.grammar import buildfile_grammar
from pybuild.errors import ParseError

_ASCII_BLANKS = re.compile("[\t\v\f\r ]+")  # BuildKit's reWhitespace
_FLAG_SPECIALS = re.compile("[\"'\\\\]")


@dataclass(frozen=True)
class Line:
    """An instruction line as the parser reads it (offsets are in characters of `original`)."""

    original: str
    keyword: str
    flags: tuple[str, ...]
    args: tuple[str, ...]
    json: bool
    child: Line | None
    keyword_offset: int
    flag_offsets: tuple[int, ...]
    args_offset: int


def _utf8(latin: str) -> str:
    """Bytes (held one per character) back to text; undecodable bytes are kept as escapes."""
    return latin.encode("latin-1").decode("utf-8", "surrogateescape")


def _decode_flag(word: str) -> str:
    """extractBuilderFlags' reading of one flag word: quotes removed, `\\` takes the next byte."""
    if not _FLAG_SPECIALS.search(word):
        return word
    out: list[str] = []
    quote = ""
    i, n = 0, len(word)
    while i < n:
        ch = word[i]
        i += 1
        if ch == "\\":
            if i < n:
                out.append(word[i])
                i += 1
        elif quote:
            if ch == quote:
                quote = ""
            else:
                out.append(ch)
        elif ch in "'\"":
            quote = ch
        else:
            out.append(ch)
    return "".join(out)


def split_command(line: str) -> tuple[str, list[tuple[str, int]], str, int, int]:
    """splitCommand: (keyword, [(flag, offset)], args, args offset, keyword offset).

    Flags are BuildKit's byte-wise reading, so a non-ASCII flag value comes out as its UTF-8
    bytes read as Latin-1 (BuildKit's own mojibake, kept so that dumps compare equal)."""
    from lark import Token
    from lark.exceptions import UnexpectedInput

    trimmed = trim_space(line)
    lead = len(line) - len(line.lstrip(GO_SPACES))
    ascii_only = trimmed.isascii()  # then bytes, Latin-1 characters and text are all the same
    latin = trimmed if ascii_only else trimmed.encode("utf-8", "surrogateescape").decode("latin-1")
    text_of = (lambda s: s) if ascii_only else _utf8
    try:
        tree = buildfile_grammar().parse(latin, start="instruction")
    except UnexpectedInput as e:  # the grammar accepts any non-empty line; this is a bug guard
        raise ParseError(f"cannot split instruction line: {e}") from None

    def char_offset(byte_pos: int) -> int:
        return lead + (byte_pos if ascii_only else len(_utf8(latin[:byte_pos])))

    tokens = [tok for tok in tree.children if isinstance(tok, Token)]
    keyword = text_of(str(tokens[0]))
    flags: list[tuple[str, int]] = []
    args_start = len(latin)
    for tok in tokens[1:]:
        start = tok.start_pos or 0
        if tok.type == "ARGS":
            args_start = start
            break
        text = str(tok)
        word = text.lstrip(BYTE_SPACES)
        decoded = _decode_flag(word)
        if decoded == "--":  # a bare -- ends the flags; what follows is argument text
            args_start = start + len(text)
            break
        flags.append((decoded, char_offset(start + len(text) - len(word))))
    rest = text_of(latin[args_start:])
    args = trim_space(rest)
    args_offset = char_offset(args_start) + len(rest) - len(rest.lstrip(GO_SPACES))
    return keyword, flags, args, args_offset, lead


@lru_cache(maxsize=4)
def _word_specials(escape: str) -> re.Pattern[str]:
    return re.compile("[" + re.escape(GO_SPACES + "'\"" + escape) + "]")


@lru_cache(maxsize=8)
def _quote_specials(quote: str, escape: str) -> re.Pattern[str]:
    return re.compile("[" + re.escape(quote + ("" if quote == "'" else escape)) + "]")


_NON_SPACE = re.compile("[^" + GO_SPACES + "]")


def parse_words(rest: str, escape: str) -> list[str]:
    """parseWords: split on unquoted whitespace, keeping quotes and escapes in the words (an
    escape at the very end is dropped; an unterminated quote runs to the end)."""
    words: list[str] = []
    n = len(rest)
    specials = _word_specials(escape)
    m = _NON_SPACE.search(rest)
    pos = m.start() if m else n
    while pos < n:
        buf: list[str] = []
        while pos < n:
            ch = rest[pos]
            if ch in GO_SPACES:
                break
            if ch == escape:
                if pos + 1 < n:
                    buf.append(rest[pos : pos + 2])
                pos += 2
            elif ch in "'\"":
                pos = _quoted(rest, pos, escape, buf)
            else:
                m = specials.search(rest, pos)
                end = m.start() if m else n
                buf.append(rest[pos:end])
                pos = end
        word = "".join(buf)
        if word:
            words.append(word)
        m = _NON_SPACE.search(rest, pos)
        pos = m.start() if m else n
    return words


def _quoted(rest: str, pos: int, escape: str, buf: list[str]) -> int:
    """A quoted part of a word (kept with its quotes), from the opening quote at `pos`."""
    quote = rest[pos]
    n = len(rest)
    buf.append(quote)
    pos += 1
    specials = _quote_specials(quote, escape)
    while pos < n:
        m = specials.search(rest, pos)
        end = m.start() if m else n
        buf.append(rest[pos:end])
        pos = end
        if pos >= n:
            break
        if rest[pos] == quote:
            buf.append(quote)
            return pos + 1
        if pos + 1 < n:  # the escape and the character it escapes
            buf.append(rest[pos : pos + 2])
        pos += 2
    return min(pos, n)


def _blank_split(rest: str) -> tuple[str, ...]:
    return tuple(_ASCII_BLANKS.split(rest)) if rest else ()


def _maybe_json(rest: str) -> tuple[tuple[str, ...], bool] | None:
    try:
        items = parse_json_array(rest)
    except NotStringArray as e:
        raise ParseError(str(e)) from None
    return None if items is None else (tuple(items), True)


def _json_or_text(rest: str) -> tuple[tuple[str, ...], bool]:
    if not rest:
        return (), False
    return _maybe_json(rest) or ((rest,), False)


def _json_or_list(rest: str) -> tuple[tuple[str, ...], bool]:
    return _maybe_json(rest) or (_blank_split(rest), False)


def _name_value(rest: str, escape: str, command: str) -> tuple[str, ...]:
    words = parse_words(rest, escape)
    if not words:
        return ()
    if "=" not in words[0]:  # legacy form: KEY value words...
        parts = _ASCII_BLANKS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ParseError(f"{command.upper()} must have two arguments")
        return (parts[0], parts[1], "")
    out: list[str] = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise ParseError(f"Syntax error - can't find = in {go_quote(word)}. Must be of the form: name=value")
        out += [key, value, "="]
    return tuple(out)


def _healthcheck(rest: str) -> tuple[tuple[str, ...], bool]:
    # the type word ends at the first byte unicode.IsSpace accepts (BuildKit scans bytes here)
    latin = rest.encode("utf-8", "surrogateescape").decode("latin-1")
    sep = 0
    while sep < len(latin) and latin[sep] not in BYTE_SPACES:
        sep += 1
    if sep == 0:
        return (), False
    after = sep
    while after < len(latin) and latin[after] in BYTE_SPACES:
        after += 1
    cmd, is_json = _json_or_text(_utf8(latin[after:]))
    return (_utf8(latin[:sep]), *cmd), is_json


def parse_line(line: str, escape: str) -> Line:
    """One logical line (continuations joined) to its parser-level form (newNodeFromLine).

    Raises ParseError for what BuildKit's parser itself rejects: a JSON array holding a
    non-string, ENV/LABEL without a value or `=`."""
    keyword, flags, rest, args_offset, keyword_offset = split_command(line)
    command = keyword.lower()
    child: Line | None = None
    is_json = False
    args: tuple[str, ...]
    if command in ("run", "cmd", "entrypoint", "shell"):
        args, is_json = _json_or_text(rest)
    elif command in ("copy", "add", "volume"):
        args, is_json = _json_or_list(rest)
    elif command in ("from", "expose"):
        args = _blank_split(rest)
    elif command in ("env", "label"):
        args = _name_value(rest, escape, command)
    elif command == "arg":
        args = tuple(parse_words(rest, escape))
    elif command in ("maintainer", "stopsignal", "user", "workdir"):
        args = (rest,) if rest else ()
    elif command == "healthcheck":
        args, is_json = _healthcheck(rest)
    elif command == "onbuild":
        args = ()
        if rest:
            child = parse_line(rest, escape)
            child = _shifted(child, args_offset)
    else:
        args = ("",)
    return Line(
        original=line,
        keyword=keyword,
        flags=tuple(f for f, _ in flags),
        args=args,
        json=is_json,
        child=child,
        keyword_offset=keyword_offset,
        flag_offsets=tuple(o for _, o in flags),
        args_offset=args_offset,
    )


def _shifted(line: Line, by: int) -> Line:
    """A nested line's offsets made relative to the enclosing line."""
    return dataclasses.replace(
        line,
        keyword_offset=line.keyword_offset + by,
        flag_offsets=tuple(o + by for o in line.flag_offsets),
        args_offset=line.args_offset + by,
    )
