"""Variable expansion and word splitting, as BuildKit's shell lexer (`frontend/dockerfile/shell`).

The public API every expanding instruction uses:

- `expand_word(word, env, escape="\\\\") -> str` is BuildKit's ProcessWord: quotes are removed,
  escapes processed and `$v`, `${v}` and the `${v<op>...}` forms expanded. It is what ENV, LABEL,
  ARG, COPY/ADD paths and flags, WORKDIR, USER, VOLUME, STOPSIGNAL, FROM and `--mount` values go
  through.
- `expand_words(text, env, escape="\\\\") -> list[str]` is ProcessWords: the same, then split into
  words on unquoted whitespace (after expansion, so a value with spaces splits); EXPOSE uses it.
- `expand_heredoc(body, env) -> str` expands a heredoc body whose delimiter was not quoted: only
  `$` forms are processed, quotes are kept (BuildKit's SkipProcessQuotes lexer).

`env` is any Mapping[str, str]; a name that is not a key is unset (and expands to ""), a key with
the value "" is set but empty. Every failure raises `pybuild.errors.ParseError`.

This is a hand-written lexer: text is copied, never re-scanned, so a `$` or `\\1` inside a value
is data. Runs of ordinary characters are copied in one slice (found with `re.search`, never
substituted) so that long values stay fast.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from parser import shellglob
from parser.gotext import GO_SPACES, go_quote
from pybuild.errors import ParseError

__all__ = ["expand_word", "expand_words", "expand_heredoc"]

_SPACE_RUNS = re.compile("[" + GO_SPACES + "]+")
_HEREDOC_SPACE = " \t\r"
_SPECIAL_PARAMS = "@*#?-$!0"


class LexError(ValueError):
    """A word the lexer cannot process (the message is BuildKit's)."""


class _Words:
    """wordsStruct: accumulates the words of ProcessWords. A word ends at unquoted whitespace
    that comes from the text or from a `$` expansion; quoted text and escaped characters never
    end a word."""

    __slots__ = ("words", "cur")

    def __init__(self) -> None:
        self.words: list[str] = []
        self.cur: list[str] = []

    def add_raw(self, s: str) -> None:
        self.cur.append(s)

    def add_string(self, s: str) -> None:
        parts = _SPACE_RUNS.split(s)
        self.cur.append(parts[0])
        for part in parts[1:]:
            self._flush()
            self.cur.append(part)

    def _flush(self) -> None:
        word = "".join(self.cur)
        if word:
            self.words.append(word)
        self.cur = []

    def finish(self) -> list[str]:
        self._flush()
        return self.words


@lru_cache(maxsize=64)
def _specials(chars: str) -> re.Pattern[str]:
    return re.compile("[" + re.escape(chars) + "]")


class _Lexer:
    """One run of BuildKit's shellWord over `text` (a cursor, never re-reads expanded text)."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str, *, raw_quotes: bool = False,
                 raw_escapes: bool = False, skip_unset: bool = False, skip_quotes: bool = False) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"invalid escape token {escape!r}")
        # Go's text/scanner drops a byte-order mark at the very start of its input
        self.text = text[1:] if text.startswith("\ufeff") else text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes

    def run(self) -> tuple[str, list[str]]:
        return self._stop_on(None, self.raw_escapes)

    def _stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        """processStopOn: the text up to `stop` (consumed) or the end, and its words."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            text, n, esc = self.text, len(self.text), self.escape
            quotes = "" if self.skip_quotes else "'\""
            special = _specials("$<" + esc + quotes + (stop or ""))
            out: list[str] = []
            words = _Words()
            while self.pos < n:
                ch = text[self.pos]
                if ch == stop:
                    self.pos += 1
                    return "".join(out), words.finish()
                if ch == "$":
                    tmp = self._dollar()
                    out.append(tmp)
                    words.add_string(tmp)
                elif ch == "<":
                    tmp = self._possible_heredoc()
                    out.append(tmp)
                    words.add_raw(tmp)
                elif ch in quotes:
                    tmp = self._single_quote() if ch == "'" else self._double_quote()
                    out.append(tmp)
                    words.add_raw(tmp)
                elif ch == esc:
                    self.pos += 1
                    if self.raw_escapes:
                        out.append(ch)
                        words.add_raw(ch)
                    if self.pos >= n:
                        break  # an escape at the very end is dropped
                    nxt = text[self.pos]
                    self.pos += 1
                    out.append(nxt)
                    words.add_raw(nxt)
                else:
                    m = special.search(text, self.pos)
                    end = m.start() if m else n
                    run = text[self.pos : end]
                    self.pos = end
                    out.append(run)
                    words.add_string(run)
            if stop is not None:
                raise LexError(f"unexpected end of statement while looking for matching {stop}")
            return "".join(out), words.finish()
        finally:
            self.raw_escapes = saved

    def _single_quote(self) -> str:
        # Everything up to the next ' is literal; nothing can be escaped.
        start = self.pos + 1
        end = self.text.find("'", start)
        if end < 0:
            raise LexError("unexpected end of statement while looking for matching single-quote")
        self.pos = end + 1
        body = self.text[start:end]
        return f"'{body}'" if self.raw_quotes else body

    def _double_quote(self) -> str:
        # $ expands; the escape only escapes ", $ and itself, and stays literal before anything else.
        text, n, esc = self.text, len(self.text), self.escape
        special = _specials('"$' + esc)
        out: list[str] = ['"'] if self.raw_quotes else []
        self.pos += 1
        while True:
            if self.pos >= n:
                raise LexError("unexpected end of statement while looking for matching double-quote")
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            elif ch == esc:
                self.pos += 1
                if self.raw_escapes:
                    out.append(ch)
                if self.pos >= n:
                    continue
                if text[self.pos] in ('"', "$", esc):
                    ch = text[self.pos]
                    self.pos += 1
                # else: the escape itself is kept (written twice in raw-escape mode, as BuildKit does)
                out.append(ch)
            else:
                m = special.search(text, self.pos)
                end = m.start() if m else n
                out.append(text[self.pos : end])
                self.pos = end

    def _possible_heredoc(self) -> str:
        # `<<` keeps the blanks after it in the same word, so `<< EOF` is one word.
        text, n = self.text, len(self.text)
        self.pos += 1
        if self.pos >= n or text[self.pos] != "<":
            return "<"
        self.pos += 1
        start = self.pos
        while self.pos < n and text[self.pos] in _HEREDOC_SPACE:
            self.pos += 1
        return "<<" + text[start : self.pos]

    def _name(self) -> str:
        """processName: a run of letters, digits and _; or a run of digits; or one special."""
        text, n, start = self.text, len(self.text), self.pos
        if start >= n:
            return ""
        ch = text[start]
        if ch.isdecimal():
            while self.pos < n and text[self.pos].isdecimal():
                self.pos += 1
            return text[start : self.pos]
        if ch in _SPECIAL_PARAMS:
            self.pos += 1
            return ch
        while self.pos < n and (text[self.pos].isalpha() or text[self.pos].isdecimal() or text[self.pos] == "_"):
            self.pos += 1
        return text[start : self.pos]

    def _lookup(self, name: str) -> str | None:
        return self.env[name] if name in self.env else None

    def _dollar(self) -> str:
        text, n = self.text, len(self.text)
        self.pos += 1
        if self.pos >= n or text[self.pos] != "{":
            name = self._name()
            if not name:
                return "$"
            value = self._lookup(name)
            if value is None:
                return "$" + name if self.skip_unset else ""
            return value
        self.pos += 1
        if self.pos >= n:
            raise LexError("syntax error: missing '}'")
        if text[self.pos] in "{}:":
            raise LexError("syntax error: bad substitution")
        name = self._name()
        if self.pos >= n:
            raise LexError("syntax error: missing '}'")
        op = text[self.pos]
        self.pos += 1
        if op == "}":
            value = self._lookup(name)
            if value is None:
                return "${" + name + "}" if self.skip_unset else ""
            return value
        if op == "/":
            return self._replace(name)
        null_is_unset = False
        ops = op
        unsupported = LexError(f"unsupported modifier ({ops}) in substitution")
        if op == ":":
            # BuildKit reads the operand of any `${v:x...}` before it rejects an unknown x
            null_is_unset = True
            op = text[self.pos] if self.pos < n else "\ufffd"
            self.pos += 1
            ops += op
            unsupported = LexError(f"unsupported modifier ({ops}) in substitution")
        elif op not in "+-?#%":
            raise unsupported
        pattern_op = op in "#%"
        if null_is_unset and pattern_op:
            raise unsupported
        word = self._operand("}", pattern_op, "syntax error: missing '}'")
        value = self._lookup(name)
        if value is None and self.skip_unset:
            return "${" + name + ops + word + "}"
        if op not in "+-?#%":
            raise unsupported
        unset = value is None or (null_is_unset and value == "")
        if op == "-":
            return word if unset else value or ""
        if op == "+":
            return "" if unset else word
        if op == "?":
            if value is None:
                raise LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        longest = word[:1] == op
        pattern = word[1:] if longest else word
        try:
            if op == "%":
                return shellglob.trim_suffix(pattern, value or "", longest=longest)
            return shellglob.trim_prefix(pattern, value or "", longest=longest)
        except shellglob.PatternError as e:
            raise LexError(f"invalid pattern ({pattern}) in substitution: {e}") from None

    def _operand(self, stop: str, raw_escapes: bool, at_eof: str) -> str:
        try:
            word, _ = self._stop_on(stop, raw_escapes)
        except LexError:
            if self.pos >= len(self.text):
                raise LexError(at_eof) from None
            raise
        return word

    def _replace(self, name: str) -> str:
        all_matches = self.text.startswith("/", self.pos)
        if all_matches:
            self.pos += 1
        pattern = self._operand("/", True, "syntax error: missing '/' in ${}")
        replacement = self._operand("}", True, "syntax error: missing '}'")
        value = self._lookup(name)
        if value is None and self.skip_unset:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        try:
            return shellglob.replace(pattern, value or "", replacement, all_matches=all_matches)
        except shellglob.PatternError as e:
            raise LexError(f"invalid pattern ({pattern}) in substitution: {e}") from None


def lex(text: str, env: Mapping[str, str], escape: str = "\\", **options: bool) -> tuple[str, list[str]]:
    """The full lexer with BuildKit's options (raw_quotes, raw_escapes, skip_unset, skip_quotes):
    (ProcessWord result, ProcessWords words). Raises LexError. The parser uses it for heredocs."""
    return _Lexer(text, env, escape, **options).run()


def _failed(word: str, err: LexError) -> ParseError:
    return ParseError(f"failed to process {go_quote(word)}: {err}")


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """ProcessWord: `word` with quotes removed, escapes processed and variables expanded."""
    try:
        return _Lexer(word, env, escape).run()[0]
    except LexError as e:
        raise _failed(word, e) from None


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """ProcessWords: expand `text`, then split it into words on unquoted whitespace."""
    try:
        return _Lexer(text, env, escape).run()[1]
    except LexError as e:
        raise _failed(text, e) from None


def expand_heredoc(body: str, env: Mapping[str, str]) -> str:
    """A heredoc body with `$` forms expanded and everything else (quotes too) kept."""
    try:
        return _Lexer(body, env, "\\", skip_quotes=True).run()[0]
    except LexError as e:
        raise _failed(body, e) from None
