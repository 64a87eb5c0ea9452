""".dockerignore files and the pattern matcher Docker applies to them (moby/patternmatcher).

What a Docker user expects, and what this module promises (F95-F98):
- `<Buildfile>.dockerignore` next to the Buildfile wins over `.dockerignore` at the context root.
- A line starting with `#` (in column 0) is a comment; every other line is trimmed, blank lines are
  skipped, a leading `!` marks an exception, the rest goes through `filepath.Clean` and loses a
  leading `/`. A lone `!` is an error naming the file and line.
- `*`, `?`, `[...]` and `\\` follow `filepath.Match`; `**` matches any number of directories
  (including none); a pattern also matches every path below a directory it matches; patterns are
  applied in order and the last one that matches decides.

Two deliberate differences from patternmatcher, both about patterns that are wrong anyway:
`\\d`, `\\w`, ... mean the letter (patternmatcher hands them to Go's regexp, where they are classes),
and `*`/`?` inside `[...]` are plain characters. A pattern that patternmatcher accepts but fails on
at match time (`[z-a]`) is reported when the file is read, with its line.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder import gomatch
from pybuild.errors import ParseError

DEFAULT_IGNORE_FILE = ".dockerignore"
_BOM = "\ufeff"
# Glob characters that make an exception pattern more than a literal path prefix (fsutil's list).
_PATTERN_CHARS = set("*[]?^\\")


@dataclass(frozen=True)
class IgnoreLine:
    """One pattern as read from an ignore file: cleaned, `!` kept, with its line number."""

    pattern: str
    line: int = 0


def parse_ignore_file(text: str, *, file: str | None = None) -> list[IgnoreLine]:
    """The patterns of an ignore file, as moby's `ignorefile.ReadAll` returns them.

    Comments and blank lines are dropped; a lone `!` is a ParseError at its line.
    """
    out: list[IgnoreLine] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if number == 1:
            raw = raw.removeprefix(_BOM)
        raw = raw.removesuffix("\r")
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = gomatch.clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        if invert:
            if not pattern:
                raise ParseError(
                    'illegal exclusion pattern: "!"',
                    file=file,
                    line=number,
                    hint="an exception needs a path after the '!', e.g. '!keep.txt'",
                )
            pattern = "!" + pattern
        out.append(IgnoreLine(pattern, number))
    return out


def find_ignore_file(context: Path, buildfile: Path | None) -> Path | None:
    """The ignore file for a build: `<buildfile>.dockerignore` beside the Buildfile if it exists,
    else `.dockerignore` at the context root, else None. `buildfile` is None for `-f -`."""
    if buildfile is not None:
        specific = buildfile.with_name(buildfile.name + DEFAULT_IGNORE_FILE)
        if specific.is_file():
            return specific
    default = context / DEFAULT_IGNORE_FILE
    return default if default.is_file() else None


def load_ignore(context: Path, buildfile: Path | None) -> PatternMatcher | None:
    """The matcher for a build context, or None when there is no ignore file."""
    path = find_ignore_file(context, buildfile)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        raise ParseError(f"cannot read ignore file: {e.strerror}", file=str(path)) from e
    return PatternMatcher(parse_ignore_file(text, file=str(path)), file=str(path))


class _Kind(enum.Enum):
    EXACT = 1
    PREFIX = 2  # `dir/**`
    SUFFIX = 3  # `**/name`, `**name`
    REGEXP = 4


@dataclass(frozen=True)
class Pattern:
    """One compiled pattern. `text` is the cleaned pattern without its `!`."""

    text: str
    exclusion: bool
    kind: _Kind
    regexp: re.Pattern[str] | None
    line: int = 0

    def match(self, path: str) -> bool:
        """Whether `path` (relative, `/`-separated, clean) itself matches (no parent matching)."""
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            # `**/foo` matches `foo` itself
            return suffix.startswith("/") and path == suffix[1:]
        return self.regexp is not None and self.regexp.match(path) is not None

    def literal_prefix(self) -> str:
        """The pattern without a trailing `/**` or `/*` (fsutil's `patternWithoutTrailingGlob`)."""
        text = self.text
        text = text.removesuffix("/**")
        return text.removesuffix("/*")


def compile_pattern(text: str, *, line: int = 0, file: str | None = None) -> Pattern:
    """Compile one pattern as patternmatcher's `New` + `compile` do (`text` may start with `!`)."""
    text = text.strip()
    cleaned = gomatch.clean(text)
    exclusion = cleaned.startswith("!")
    if exclusion:
        if len(cleaned) == 1:
            raise ParseError('illegal exclusion pattern: "!"', file=file, line=line)
        cleaned = cleaned[1:]
    try:
        gomatch.check(cleaned)
    except gomatch.BadPattern as e:
        raise ParseError(f"invalid pattern {cleaned!r}: {e.message}", file=file, line=line) from e
    kind, regex = _translate(cleaned)
    compiled = None
    if kind is _Kind.REGEXP:
        try:
            compiled = re.compile(regex, re.DOTALL)
        except re.error as e:
            raise ParseError(f"invalid pattern {cleaned!r}: {e}", file=file, line=line) from e
    return Pattern(cleaned, exclusion, kind, compiled, line)


def _translate(pattern: str) -> tuple[_Kind, str]:
    """The match kind and (for REGEXP) the regular expression of a cleaned pattern."""
    out = ["^"]
    kind = _Kind.EXACT
    i = 0
    n = len(pattern)
    first = True
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1  # `**/` is `**`
                if i >= n:
                    # `**` at the end matches everything below
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        out.append(".*")
                        kind = _Kind.REGEXP
                else:
                    out.append("(.*/)?")
                    kind = _Kind.REGEXP
                if first:
                    kind = _Kind.SUFFIX
            else:
                out.append("[^/]*")
                kind = _Kind.REGEXP
        elif ch == "?":
            out.append("[^/]")
            kind = _Kind.REGEXP
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
                kind = _Kind.REGEXP
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            j = _class_end(pattern, i)
            out.append(_translate_class(pattern[i:j]))
            i = j + 1
            kind = _Kind.REGEXP
        else:
            out.append(re.escape(ch))
        first = False
    out.append(r"\Z")  # Go's `$`: the end of the text, even after a newline
    return kind, "".join(out)


def _class_end(pattern: str, start: int) -> int:
    """Index of the `]` closing the class whose body starts at `start` (pattern already checked)."""
    i = start
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            first = False
            continue
        if ch == "]" and not first:
            return i
        first = False
        i += 1
    return len(pattern)


def _translate_class(body: str) -> str:
    out = ["["]
    i = 0
    if body.startswith("^"):
        out.append("^")
        i = 1
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(re.escape(body[i + 1]))
            i += 2
            continue
        out.append("-" if ch == "-" else re.escape(ch))
        i += 1
    out.append("]")
    return "".join(out)


@dataclass(frozen=True)
class MatchInfo:
    """Per-pattern results for a directory, handed to its children (`MatchesUsingParentResults`)."""

    parent_matched: tuple[bool, ...] = ()


class PatternMatcher:
    """An ordered list of patterns; the last one that matches a path decides whether it is
    excluded. Stateless once built; safe to share."""

    def __init__(self, patterns: Iterable[str | IgnoreLine], *, file: str | None = None) -> None:
        compiled: list[Pattern] = []
        for p in patterns:
            text, line = (p.pattern, p.line) if isinstance(p, IgnoreLine) else (p, 0)
            if not text.strip():
                continue
            compiled.append(compile_pattern(text, line=line, file=file))
        self.patterns: tuple[Pattern, ...] = tuple(compiled)
        self.file = file
        self.has_exclusions = any(p.exclusion for p in self.patterns)
        # fsutil skips an excluded directory unless a literal exception lies below it; with any
        # glob in an exception it has to look inside every excluded directory.
        self.only_prefix_exclusions = not any(
            p.exclusion and _PATTERN_CHARS & set(p.literal_prefix()) for p in self.patterns
        )

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        """True if `path` is excluded: matched, directly or through a parent directory, by a
        pattern not undone by a later exception (`MatchesOrParentMatches`)."""
        path = gomatch.clean(path)
        if path == ".":
            return False
        parents = _parent_prefixes(path)
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path) or any(pattern.match(p) for p in parents)
            if hit:
                matched = not pattern.exclusion
        return matched

    def matches_exact(self, path: str) -> bool:
        """Like `matches` but without parent-directory matching (`MatchesExact`)."""
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            if pattern.match(path):
                matched = not pattern.exclusion
        return matched

    def matches_with_parent(self, path: str, parent: MatchInfo | None = None) -> tuple[bool, MatchInfo]:
        """`MatchesUsingParentResults`: the walker's form. `parent` is what this returned for the
        path's directory (None at the top, or when unknown: then parents are checked here)."""
        known = parent.parent_matched if parent is not None else ()
        if known and len(known) != len(self.patterns):
            raise ValueError("MatchInfo from another matcher")
        matched = False
        results: list[bool] = []
        parents: list[str] | None = None
        for i, pattern in enumerate(self.patterns):
            hit = bool(known) and known[i]
            if not hit:
                if pattern.exclusion != matched:
                    results.append(False)
                    continue
                hit = pattern.match(path)
                if not hit and not known:
                    if parents is None:
                        parents = _parent_prefixes(path)
                    hit = any(pattern.match(p) for p in parents)
            results.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, MatchInfo(tuple(results))

    def may_reinclude_below(self, directory: str) -> bool:
        """Whether an excluded `directory` must still be walked because an exception could bring
        back something inside it (fsutil's rule: literal exceptions under it, or any glob one)."""
        if not self.has_exclusions:
            return False
        if not self.only_prefix_exclusions:
            return True
        prefix = directory + "/"
        return any(p.exclusion and (p.literal_prefix() + "/").startswith(prefix) for p in self.patterns)


    def may_include_below(self, directory: str) -> bool:
        """Whether a pattern (not an exception) could match something below `directory`: used
        to prune walks for include patterns (`COPY --parents`). Conservative with `**`."""
        parts = directory.split("/")
        for p in self.patterns:
            if p.exclusion:
                continue
            pparts = p.text.split("/")
            if any("**" in c for c in pparts):
                return True
            # every component the pattern shares with the directory must match it
            if all(_component_matches(c, d) for c, d in zip(pparts, parts)):
                return True
        return False


def _component_matches(pattern: str, name: str) -> bool:
    try:
        return gomatch.match(pattern, name)
    except gomatch.BadPattern:
        return True


def _parent_prefixes(path: str) -> list[str]:
    """`a/b/c` -> [`a`, `a/b`]: the directories above a relative path, outermost first."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def matcher_from_patterns(patterns: Sequence[str], *, what: str) -> PatternMatcher | None:
    """A matcher for patterns given on a command line or a flag (`COPY --exclude`), or None."""
    cleaned = [p for p in patterns if p.strip()]
    if not cleaned:
        return None
    return PatternMatcher(cleaned, file=what)
