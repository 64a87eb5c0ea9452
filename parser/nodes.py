"""The node level: what BuildKit's `parser.Parse` returns, as frozen values.

A `Node` is one instruction as written: the keyword in its original case, the builder flags (quotes
removed), the parser-level argument words (no expansion, quotes kept; see
../shared/reference/parse-dump.md for what the words are per instruction), whether the arguments
were a JSON array, the heredoc bodies, and where it came from. The typed level
(`parser.instructions`) is built from these.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

HEREDOC_KEYWORDS = frozenset({"run", "copy", "add"})


def chomp(body: str) -> str:
    """BuildKit's ChompHeredocContent: leading tabs removed from every line (lines end at \\n
    only, as Go's `(?m)^`)."""
    return "\n".join(line.lstrip("\t") for line in body.split("\n"))


@dataclass(frozen=True)
class Heredoc:
    """One `<<NAME` body. `content` is the raw body: every line with its newline, the terminator
    line left out, leading tabs NOT removed even when `chomp` (BuildKit strips them at use:
    see `chomped`)."""

    name: str
    fd: int
    expand: bool  # False when any part of the delimiter word was quoted
    chomp: bool  # `<<-`
    content: str

    @property
    def chomped(self) -> str:
        """The body as used: with `<<-`, leading tabs removed from every line."""
        return chomp(self.content) if self.chomp else self.content


@dataclass(frozen=True)
class Positions:
    """Where the parts of a logical line came from, for messages.

    `segments` maps offsets in the logical line (continuations joined) to physical positions:
    each entry is (offset, line, column) for the start of one physical piece, columns 1-based.
    """

    segments: tuple[tuple[int, int, int], ...]
    keyword: int = 0  # offset of the keyword
    flags: tuple[int, ...] = ()  # offset of each flag word
    args: int = 0  # offset of the argument text

    def at(self, offset: int) -> tuple[int, int]:
        """The (line, column) of a logical-line offset."""
        if not self.segments:
            return (0, 0)
        starts = [s[0] for s in self.segments]
        i = max(bisect.bisect_right(starts, offset) - 1, 0)
        start, line, column = self.segments[i]
        return (line, column + max(offset - start, 0))


@dataclass(frozen=True)
class Node:
    """One instruction at the parser level (BuildKit's `*parser.Node`)."""

    keyword: str  # as written: "RUN", "run", "Copy", or an unknown word
    flags: tuple[str, ...]
    args: tuple[str, ...]  # the dump's words
    json: bool  # the arguments were a JSON array (exec form)
    heredocs: tuple[Heredoc, ...]
    original: str  # the logical line, continuations joined, comments dropped
    start_line: int
    end_line: int  # the last line, heredoc bodies included
    column: int  # of the keyword
    child: Node | None = None  # ONBUILD's trigger instruction
    comments: tuple[str, ...] = ()  # the comment lines just above it
    positions: Positions = field(default=Positions(()), compare=False, repr=False)

    @property
    def command(self) -> str:
        """The keyword lower-cased, which is how instructions are recognised."""
        return self.keyword.lower()

    def at(self, offset: int) -> tuple[int, int]:
        return self.positions.at(offset)


@dataclass(frozen=True)
class ParseWarning:
    """A parse-time warning, named after the BuildKit check rule it corresponds to."""

    rule: str  # e.g. "NoEmptyContinuation"
    message: str
    line: int
    url: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "line": self.line, "message": self.message, "url": self.url}


@dataclass(frozen=True)
class CheckConfig:
    """The `# check=skip=A,B;error=true` directive."""

    skip: tuple[str, ...] = ()
    skip_all: bool = False
    error: bool = False


@dataclass(frozen=True)
class Directives:
    """The parser directives of the leading comment block."""

    escape: str = "\\"
    syntax: str | None = None
    check: str | None = None
    check_config: CheckConfig = CheckConfig()


@dataclass(frozen=True)
class NodeTree:
    """The node level of a whole Buildfile."""

    file: str
    nodes: tuple[Node, ...]
    directives: Directives
    warnings: tuple[ParseWarning, ...]

    @property
    def escape(self) -> str:
        return self.directives.escape
