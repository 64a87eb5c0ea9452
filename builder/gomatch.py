"""Go's `path/filepath` matching rules, which Buildfile sources and `.dockerignore` are defined by.

BuildKit resolves COPY/ADD wildcards with `filepath.Match` and cleans paths with `filepath.Clean`;
users' Buildfiles depend on their exact rules (`*` and `?` never match `/`, `[...]` classes with
`^` negation and `\\` escapes, a malformed pattern is an error even when the name fails to match
early). This module reproduces them on Python strings, so that code points play the part of Go's
runes.
"""

from __future__ import annotations

from pybuild.errors import PybuildError


class BadPattern(PybuildError):
    """A glob pattern that `filepath.Match` rejects (`syntax error in pattern`)."""

    def __init__(self, pattern: str) -> None:
        super().__init__(f"syntax error in pattern {pattern!r}")
        self.pattern = pattern


def clean(path: str) -> str:
    """`filepath.Clean`: the shortest lexically equal path (`a//b/../c/` -> `a/c`, `` -> `.`).

    Unlike `posixpath.normpath`, a leading `//` becomes `/`, as in Go.
    """
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    text = "/".join(out)
    if rooted:
        return "/" + text
    return text or "."


def has_wildcards(name: str) -> bool:
    """True if `name` holds an unescaped `*`, `?` or `[` (BuildKit's `containsWildcards`)."""
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "*?[":
            return True
        i += 1
    return False


def match(pattern: str, name: str) -> bool:
    """`filepath.Match(pattern, name)`: whether the whole of `name` matches the shell pattern.

    `*` matches any run of non-`/` characters, `?` one non-`/` character, `[a-z]`/`[^a-z]` one
    character of (not of) the class, and `\\x` the character x. Raises BadPattern for a malformed
    pattern, also when the name would fail to match before the bad part is reached (Go >= 1.16).
    """
    rest_pattern = pattern
    while rest_pattern:
        star, chunk, rest_pattern = _scan_chunk(rest_pattern)
        if star and not chunk:
            # A trailing * matches the rest of the name unless it holds a separator.
            return "/" not in name
        rest, ok = _match_chunk(chunk, name, pattern)
        # The last chunk must consume the whole name; otherwise a star may still help.
        if ok and (not rest or rest_pattern):
            name = rest
            continue
        if star:
            # Try the chunk after skipping i+1 characters, never skipping a separator.
            found = False
            i = 0
            while i < len(name) and name[i] != "/":
                rest, ok = _match_chunk(chunk, name[i + 1 :], pattern)
                if ok:
                    if not rest_pattern and rest:
                        i += 1
                        continue
                    name = rest
                    found = True
                    break
                i += 1
            if found:
                continue
        # No match: the rest of the pattern must still be well-formed.
        while rest_pattern:
            _, chunk, rest_pattern = _scan_chunk(rest_pattern)
            _match_chunk(chunk, "", pattern)
        return False
    return not name


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    """Split off leading stars and the following chunk up to the next unbracketed star."""
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    in_range = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif ch == "[":
            in_range = True
        elif ch == "]":
            in_range = False
        elif ch == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _match_chunk(chunk: str, s: str, whole: str) -> tuple[str, bool]:
    """Match `chunk` (no stars) at the start of `s`; return what is left of `s` and whether it
    matched. The whole chunk is always parsed, so a malformed one raises even after a mismatch."""
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        ch = chunk[0]
        if ch == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = False
            if chunk.startswith("^"):
                negated = True
                chunk = chunk[1:]
            matched = False
            nrange = 0
            while True:
                if chunk.startswith("]") and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk, whole)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:], whole)
                if not failed and lo <= r <= hi:
                    matched = True
                nrange += 1
            if matched == negated:
                failed = True
        elif ch == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if ch == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPattern(whole)
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return s, True


def _get_esc(chunk: str, whole: str) -> tuple[str, str]:
    """One possibly escaped character of a class; a class may not end here."""
    if not chunk or chunk[0] in "-]":
        raise BadPattern(whole)
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPattern(whole)
    r, rest = chunk[0], chunk[1:]
    if not rest:
        raise BadPattern(whole)
    return r, rest


def check(pattern: str) -> None:
    """Raise BadPattern if `pattern` is malformed (what `filepath.Match(pattern, ".")` reports)."""
    match(pattern, ".")
