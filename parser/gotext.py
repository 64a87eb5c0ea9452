"""Go's text primitives, reproduced exactly where BuildKit's behaviour depends on them.

BuildKit is written in Go, and several of its parse results follow from Go library details rather
than from any Dockerfile rule: which characters `unicode.IsSpace` accepts, how `strconv.Quote`
escapes a string (the parse dump), what `time.ParseDuration` and `strconv.ParseBool` accept.
Python's own versions differ in small ways (`str.isspace` also accepts U+001C..U+001F, `json.dumps`
writes `\\u0000`), so the parser uses these instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# unicode.IsSpace: the Latin-1 spaces plus the Unicode White_Space characters above U+00FF.
GO_SPACES = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
# unicode.IsSpace applied to single bytes (rune(b)), as BuildKit's byte-wise scanners do.
BYTE_SPACES = "\t\n\v\f\r \x85\xa0"


def trim_space(s: str) -> str:
    """strings.TrimSpace."""
    return s.strip(GO_SPACES)


def trim_left_space(s: str) -> str:
    """strings.TrimLeftFunc(s, unicode.IsSpace)."""
    return s.lstrip(GO_SPACES)


# --- strconv.Quote -----------------------------------------------------------------------------

_PLAIN = re.compile(r'[^ !#-\[\]-~]')  # anything that is not printable ASCII other than " and \
_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
                  '"': '\\"', "\\": "\\\\"}


class _QuoteTable(dict[int, str]):
    """str.translate table computing Go's escape for each character the first time it is seen."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        if ch in _SHORT_ESCAPES:
            out = _SHORT_ESCAPES[ch]
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte carried by surrogateescape
            out = f"\\x{code - 0xDC00:02x}"
        elif code < 0x20 or code == 0x7F:
            out = f"\\x{code:02x}"
        elif code < 0x80 or ch.isprintable():
            out = ch
        elif 0xD800 <= code <= 0xDFFF:
            out = "\\ufffd"  # Go strings cannot hold a lone surrogate; it decodes as U+FFFD
        elif code < 0x10000:
            out = f"\\u{code:04x}"
        else:
            out = f"\\U{code:08x}"
        self[code] = out
        return out


_QUOTE_TABLE = _QuoteTable()


def go_quote(s: str) -> str:
    """strconv.Quote: a double-quoted Go string literal (`\\x00`, `\\a`..`\\v`, printable
    non-ASCII kept as is)."""
    if _PLAIN.search(s) is None:
        return f'"{s}"'
    return '"' + s.translate(_QUOTE_TABLE) + '"'


def quote_slice(items: Iterable[str]) -> str:
    """fmt's %q of a []string: `["a" "b"]`."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


# --- strconv -----------------------------------------------------------------------------------

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(s: str) -> bool:
    """strconv.ParseBool; raises ValueError with Go's message."""
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"strconv.ParseBool: parsing {go_quote(s)}: invalid syntax")


def parse_int(s: str, base: int = 10, bits: int = 64, *, signed: bool = True) -> int:
    """strconv.ParseInt / ParseUint for bases 8 and 10 (no `0x` prefixes, no underscores)."""
    func = "ParseInt" if signed else "ParseUint"
    body = s
    negative = False
    if signed and body[:1] in ("+", "-"):
        negative = body[0] == "-"
        body = body[1:]
    digits = "01234567" if base == 8 else "0123456789"
    if not body or any(c not in digits for c in body):
        raise ValueError(f"strconv.{func}: parsing {go_quote(s)}: invalid syntax")
    value = -int(body, base) if negative else int(body, base)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= value <= high:
        raise ValueError(f"strconv.{func}: parsing {go_quote(s)}: value out of range")
    return value


# --- time.ParseDuration ------------------------------------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_MAX_DURATION = (1 << 63) - 1


def parse_duration(s: str) -> int:
    """time.ParseDuration, in nanoseconds; raises ValueError with Go's message."""
    orig = s
    invalid = ValueError(f"time: invalid duration {go_quote(orig)}")
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        i = 0
        while i < len(s) and s[i].isdigit() and s[i].isascii():
            i += 1
        whole, s = s[:i], s[i:]
        frac = ""
        if s[:1] == ".":
            j = 1
            while j < len(s) and s[j].isdigit() and s[j].isascii():
                j += 1
            frac, s = s[1:j], s[j:]
        if not whole and not frac:
            raise invalid  # no digits at all, e.g. ".s"
        j = 0
        while j < len(s) and s[j] != "." and not (s[j].isdigit() and s[j].isascii()):
            j += 1
        unit, s = s[:j], s[j:]
        if not unit:
            raise ValueError(f"time: missing unit in duration {go_quote(orig)}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(orig)}")
        scale = _UNITS[unit]
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // 10 ** len(frac)
        total += value
        if total > _MAX_DURATION + (1 if negative else 0):
            raise invalid
    return -total if negative else total


def format_duration(ns: int) -> str:
    """time.Duration.String, exactly (integer arithmetic): `1m30s`, `1h0m0s`, `1.5s`, `500ms`."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        unit, prec = ("ns", 0) if ns < 1_000 else ("\u00b5s", 3) if ns < 1_000_000 else ("ms", 6)
        whole, frac = _fraction(ns, prec)
        return f"{sign}{whole}{frac}{unit}"
    seconds, frac = _fraction(ns, 9)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return f"{sign}{out}{seconds}{frac}s"


def _fraction(value: int, digits: int) -> tuple[int, str]:
    """Go's fmtFrac: `value` split at `digits` decimal places, the fraction without trailing zeros
    (and without its point when it is zero)."""
    whole, rest = divmod(value, 10**digits)
    text = f"{rest:0{digits}d}".rstrip("0") if digits else ""
    return whole, "." + text if text else ""


def quote_rune(code: int) -> str:
    """strconv.QuoteRune (what fmt's %q makes of an integer): `'\\x03'`, `'A'`."""
    ch = chr(code) if 0 <= code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"
    inner = go_quote(ch)[1:-1]
    return "'" + ("\\'" if ch == "'" else '"' if ch == '"' else inner) + "'"


def format_list(items: Iterable[str]) -> str:
    """fmt's %v of a []string: `[a b]` (no quoting)."""
    return "[" + " ".join(items) + "]"


# --- go-units RAMInBytes -----------------------------------------------------------------------

_RAM = re.compile(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?\Z")


def ram_in_bytes(size: str) -> int:
    """docker/go-units RAMInBytes (`64m`, `1.5g`, `512`), binary multiples."""
    m = _RAM.match(size)
    if m is None or not m.group(1).isascii():
        raise ValueError(f"invalid size: '{size}'")
    try:
        number = float(m.group(1))
    except ValueError:
        raise ValueError(f"invalid size: '{size}'") from None
    power = " kmgtp".index((m.group(2) or " ").lower())
    return int(number * (1024**power))


# --- "did you mean" ----------------------------------------------------------------------------


def _distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Levenshtein plus adjacent transpositions)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def suggest(value: str, options: Sequence[str], *, case_sensitive: bool = False) -> str | None:
    """The option closest to `value` when it is a plausible typo (at most two edits), else None."""
    if not value:
        return None
    key = value if case_sensitive else value.lower()
    best: tuple[int, str] | None = None
    for opt in options:
        d = _distance(key, opt if case_sensitive else opt.lower())
        if d <= 2 and d < len(key) and (best is None or d < best[0]):
            best = (d, opt)
    return best[1] if best else None


def go_lower(s: str) -> str:
    """strings.ToLower: per character, so no final-sigma rule, and U+0130 becomes plain `i`."""
    if s.isascii():
        return s.lower()
    out = []
    for ch in s:
        low = ch.lower()
        out.append(low if len(low) == 1 else ("i" if ch == "\u0130" else ch))
    return "".join(out)
