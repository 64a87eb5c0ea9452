"""The patterns of `${v#p}`, `${v%p}` and `${v/p/r}`: matching without regular expressions.

BuildKit turns a pattern into a Go regular expression (`*` -> `.*` or `.*?`, `?` -> `.`) and runs
it with leftmost-first semantics. For such patterns (literals, `?` and `*` only) leftmost-first
with all-greedy stars finds the longest match from the leftmost start, and all-lazy stars the
shortest, so a plain NFA walk over (pattern position x text position) gives the same answers in
O(len(pattern) * len(text)) time, with no backtracking blow-up. As in Go, `?` and `*` do not match
a newline (RE2's `.` excludes `\\n`).
"""

from __future__ import annotations

from dataclasses import dataclass

STAR = object()  # matches any run of non-newline characters
ANY = object()  # matches one non-newline character
Token = object  # a one-character str literal, STAR or ANY


class PatternError(ValueError):
    """A pattern BuildKit rejects (an escape of something other than `*`, `?`, `\\`, `}`, `/`)."""


@dataclass(frozen=True)
class Pattern:
    tokens: tuple[Token, ...]

    @classmethod
    def compile(cls, text: str) -> Pattern:
        """convertShellPatternToRegex's reading of a pattern (`\\}` and `\\/` lose the backslash)."""
        if text.startswith("\ufeff"):  # Go's text/scanner skips a leading byte-order mark
            text = text[1:]
        tokens: list[Token] = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            i += 1
            if ch == "*":
                tokens.append(STAR)
            elif ch == "?":
                tokens.append(ANY)
            elif ch == "\\":
                nxt = text[i] if i < n else ""
                if nxt in ("}", "/") and nxt:
                    continue  # the escape belongs to ${...}, not to the pattern
                if nxt not in ("*", "?", "\\"):
                    raise PatternError(f"invalid escape '\\{nxt or chr(0xFFFD)}'")
                tokens.append(nxt)
                i += 1
            else:
                tokens.append(ch)
        return cls(tuple(tokens))

    def reversed(self) -> Pattern:
        return Pattern(self.tokens[::-1])

    # -- matching ---------------------------------------------------------------------------

    def _closure(self, states: set[int]) -> set[int]:
        """Add the positions reachable by letting stars match nothing."""
        out = set(states)
        for s in sorted(states):
            while s < len(self.tokens) and self.tokens[s] is STAR:
                s += 1
                out.add(s)
        return out

    def _step(self, states: set[int], ch: str) -> set[int]:
        nxt: set[int] = set()
        for s in states:
            if s == len(self.tokens):
                continue
            tok = self.tokens[s]
            if tok is STAR:
                if ch != "\n":
                    nxt.add(s)
            elif tok is ANY:
                if ch != "\n":
                    nxt.add(s + 1)
            elif tok == ch:
                nxt.add(s + 1)
        return self._closure(nxt)

    def prefix_end(self, text: str, *, longest: bool) -> int | None:
        """The end of the shortest or longest prefix of `text` that the pattern matches."""
        accept = len(self.tokens)
        states = self._closure({0})
        found = 0 if accept in states else None
        if found is not None and not longest:
            return 0
        for i, ch in enumerate(text, 1):
            states = self._step(states, ch)
            if not states:
                break
            if accept in states:
                found = i
                if not longest:
                    return i
        return found

    def search(self, text: str, start: int = 0) -> tuple[int, int] | None:
        """Go's FindStringIndex for the greedy pattern: the leftmost match, longest from there."""
        accept = len(self.tokens)
        # state -> the leftmost start of a thread in that state (a later start in the same state
        # can never beat it: it has the same future)
        threads: dict[int, int] = {}
        best: tuple[int, int] | None = None

        def seed(at: int) -> None:
            for s in self._closure({0}):
                threads.setdefault(s, at)

        seed(start)
        if accept in threads:
            best = (threads[accept], start)
        for i in range(start, len(text)):
            ch = text[i]
            moved: dict[int, int] = {}
            for s, origin in threads.items():
                for t in self._step({s}, ch):
                    if t not in moved or origin < moved[t]:
                        moved[t] = origin
            threads = moved
            if best is None:
                seed(i + 1)
            if accept in threads:
                origin = threads[accept]
                if best is None or origin < best[0] or (origin == best[0] and i + 1 > best[1]):
                    best = (origin, i + 1)
            if best is not None:
                # only threads that could still give an earlier or longer match matter
                threads = {s: o for s, o in threads.items() if o <= best[0]}
                if not threads:
                    break
        return best


def trim_prefix(pattern: str, value: str, *, longest: bool) -> str:
    """`${v#p}` (shortest) and `${v##p}` (longest)."""
    end = Pattern.compile(pattern).prefix_end(value, longest=longest)
    return value if end is None else value[end:]


def trim_suffix(pattern: str, value: str, *, longest: bool) -> str:
    """`${v%p}` and `${v%%p}`: the prefix rule applied to both strings reversed, as BuildKit does."""
    end = Pattern.compile(pattern).reversed().prefix_end(value[::-1], longest=longest)
    return value if end is None else value[: len(value) - end]


def replace(pattern: str, value: str, replacement: str, *, all_matches: bool) -> str:
    """`${v/p/r}` (first match, replacement taken literally) and `${v//p/r}` (every match, with
    Go's `$` template expansion of the replacement, as regexp.ReplaceAllString does)."""
    pat = Pattern.compile(pattern)
    if not all_matches:
        hit = pat.search(value)
        if hit is None:
            return value
        return value[: hit[0]] + replacement + value[hit[1] :]
    out: list[str] = []
    last_end = 0
    pos = 0
    while pos <= len(value):
        hit = pat.search(value, pos)
        if hit is None:
            break
        a, b = hit
        out.append(value[last_end:a])
        if b > last_end or a == 0:
            out.append(_expand_template(replacement, value[a:b]))
        last_end = b
        pos = pos + 1 if pos + 1 > b else b
    out.append(value[last_end:])
    return "".join(out)


def _expand_template(template: str, match: str) -> str:
    """regexp's Expand for a pattern without groups: `$$` is `$`, `$0`/`${0}` the match, any other
    `$name` nothing, and a `$` not followed by a name stays literal."""
    if "$" not in template:
        return template
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        j = template.find("$", i)
        if j < 0:
            break
        out.append(template[i:j])
        i = j + 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        brace = i < n and template[i] == "{"
        k = i + 1 if brace else i
        start = k
        while k < n and (template[k].isalnum() or template[k] == "_"):
            k += 1
        name = template[start:k]
        if not name or (brace and (k >= n or template[k] != "}")):
            out.append("$")  # malformed: the $ is plain text
            continue
        i = k + 1 if brace else k
        if name == "0":
            out.append(match)
    out.append(template[i:])
    return "".join(out)
