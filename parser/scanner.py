"""Physical lines to instruction nodes: BuildKit's `parser.Parse` loop.

This hand-written scanner does what a grammar cannot do in one pass: it recognises the parser
directives at the top (which change the escape character for everything after them), drops comment
lines (also inside a continued instruction), joins continuation lines, skips empty continuation
lines with a warning, and reads heredoc bodies, whose extent depends on markers found in the
instruction line. Each logical line then goes to `parser.arguments.parse_line` (the Lark grammar
plus BuildKit's per-keyword argument rules).

It is linear in the input: every physical line is looked at a bounded number of times, and
logical lines are built by joining pieces once. Errors are collected rather than raised one at a
time, so a file with several problems reports them all.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

from parser.arguments import Line, parse_line
from parser.gotext import go_quote, parse_bool, trim_left_space, trim_space
from parser.heredoc import HeredocError, markers_in_line
from parser.nodes import (
    HEREDOC_KEYWORDS,
    CheckConfig,
    Directives,
    Heredoc,
    Node,
    NodeTree,
    ParseWarning,
    Positions,
)
from pybuild.errors import ParseError, ParseErrors

MAX_LINE_BYTES = 65535  # bufio.Scanner's limit as BuildKit uses it (MaxScanTokenSize - 1)
_DIRECTIVE = re.compile(r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
NO_EMPTY_CONTINUATION_URL = "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/"


def parse_check(value: str) -> CheckConfig:
    """linter.ParseLintOptions: `skip=Rule,Rule|all` and `error=<bool>`, joined by `;`."""
    value = trim_space(value)
    if not value:
        return CheckConfig()
    skip: tuple[str, ...] = ()
    skip_all = error = False
    for part in value.split(";", 1):
        key, eq, val = part.partition("=")
        if not eq:
            raise ValueError(f"invalid check option {go_quote(part)}")
        key = trim_space(key)
        if key == "skip":
            val = trim_space(val)
            if val == "all":
                skip_all = True
            else:
                skip = tuple(trim_space(rule) for rule in val.split(","))
        elif key == "error":
            try:
                error = parse_bool(trim_space(val))
            except ValueError as e:
                raise ValueError(f"failed to parse check option {go_quote(part)}: {e}") from None
        else:
            raise ValueError(f"invalid check option {go_quote(key)}")
    return CheckConfig(skip=skip, skip_all=skip_all, error=error)


def frontend_directive(lines: list[str], key: str) -> tuple[str, int] | None:
    """(value, line) of `key` as BuildKit's frontend finds it (DetectSyntax/ParseDirective) when
    the parser's own directive block does not have it: after a `#!` first line, and for `syntax`
    also in `//` comments or a whole-file JSON object."""
    if not lines:
        return None
    start = 1 if lines[0].removeprefix("\ufeff").startswith("#!") else 0
    for prefix in ("#", "//") if key == "syntax" else ("#",):
        pattern = re.compile(re.escape(prefix) + _DIRECTIVE.pattern[1:])
        seen: set[str] = set()
        for number in range(start, len(lines)):
            m = pattern.fullmatch(lines[number].removeprefix("\ufeff") if number == 0 else lines[number])
            if m is None or (name := m.group(1).lower()) not in _KNOWN_DIRECTIVES or name in seen:
                break
            seen.add(name)
            if name == key:
                return m.group(2), number + 1
    if key == "syntax":
        try:
            doc = json.loads("\n".join(lines))
        except ValueError:
            return None
        if isinstance(doc, dict) and isinstance(doc.get("syntax"), str):
            return doc["syntax"], 1
    return None


def _decode(data: str | bytes, file: str, errors: list[ParseError]) -> list[str]:
    """The physical lines (without their newline), after checking encoding, NULs and lengths."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
            bad_utf8 = False
        except UnicodeDecodeError:
            text = data.decode("utf-8", "surrogateescape")
            bad_utf8 = True
    else:
        text = data
        # text read with errors="surrogateescape" carries undecodable bytes as lone surrogates
        bad_utf8 = _ESCAPED_BYTE.search(text) is not None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the text ended with a newline
    has_nul = "\x00" in text
    for number, line in enumerate(lines, 1):
        if bad_utf8 and (m := _ESCAPED_BYTE.search(line)):
            byte = ord(m.group()) - 0xDC00
            errors.append(ParseError(f"invalid UTF-8 (byte 0x{byte:02x})", file=file, line=number, column=m.start() + 1,
                                     hint="a Buildfile must be UTF-8 text"))
        if has_nul and (col := line.find("\x00")) >= 0:
            errors.append(ParseError("NUL byte in Buildfile", file=file, line=number, column=col + 1,
                                     hint="a Buildfile must be text"))
        if len(line) > MAX_LINE_BYTES // 4 and len(line.encode("utf-8", "surrogateescape")) > MAX_LINE_BYTES:
            errors.append(ParseError(f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES}",
                                     file=file, line=number, column=1))
    return lines


class _Scanner:
    def __init__(self, lines: list[str], file: str, errors: list[ParseError], *, final_newline: bool) -> None:
        self.lines = lines
        self.final_newline = final_newline
        self.file = file
        self.errors = errors
        self.next = 0  # index of the next physical line
        self.escape = "\\"
        self.directives_done = False
        self.directives: dict[str, tuple[str, int]] = {}
        self.warnings: list[ParseWarning] = []
        self.nodes: list[Node] = []

    def error(self, message: str, line: int, column: int = 1, hint: str | None = None) -> None:
        self.errors.append(ParseError(message, file=self.file, line=line, column=column, hint=hint))

    # -- directives --------------------------------------------------------------------------

    def _directive(self, token: str, line: int) -> bool:
        """DirectiveParser.ParseLine on a left-trimmed line; True if it was a directive."""
        if self.directives_done:
            return False
        m = _DIRECTIVE.fullmatch(token)
        if m is None or m.group(1).lower() not in _KNOWN_DIRECTIVES:
            self.directives_done = True
            return False
        key, value = m.group(1).lower(), m.group(2)
        if key in self.directives:
            self.error(f"only one {key} parser directive can be used", line)
            return True
        self.directives[key] = (value, line)
        if key == "escape":
            if value not in ("\\", "`"):
                self.error(f"invalid escape token '{value}' does not match ` or \\", line,
                           hint="use `# escape=\\` (the default) or `# escape=`` (backtick)")
            else:
                self.escape = value
        return True

    def _directive_values(self) -> Directives:
        found = {key: self.directives.get(key) or frontend_directive(self.lines, key) for key in ("syntax", "check")}
        check_config = CheckConfig()
        if found["check"] is not None:
            value, line = found["check"]
            try:  # BuildKit configures the checks from the value's first word only
                check_config = parse_check(value.split(" ", 1)[0])
            except ValueError as e:
                self.error(str(e), line)
        return Directives(
            escape=self.escape,
            syntax=found["syntax"][0] if found["syntax"] else None,
            check=found["check"][0] if found["check"] else None,
            check_config=check_config,
        )

    # -- lines -------------------------------------------------------------------------------

    def _continued(self, line: str) -> tuple[str, bool]:
        """trimContinuationCharacter: (text, True) when the line continues onto the next one.

        The escape character is a continuation when it is the last non-blank character and is
        not itself escaped (`c:\\\\` at the end of a line is not a continuation)."""
        body = line.rstrip(" \t")
        if not body.endswith(self.escape):
            return line, False
        if len(body) == 1:
            return "", True
        if body[-2] == self.escape:
            return line, False
        return body[:-1], True

    def run(self) -> tuple[list[Node], list[ParseWarning], Directives]:
        lines = self.lines
        comments: list[str] = []
        while self.next < len(lines):
            raw = lines[self.next]
            if self.next == 0:
                raw = raw.removeprefix("\ufeff")
            self.next += 1
            number = self.next
            token = trim_left_space(raw.rstrip("\r"))
            is_comment = token.startswith("#")
            if is_comment:
                text = trim_space(raw[1:])  # BuildKit drops the line's first character, '#' or not
                comments = comments + [text] if text else []
            if self._directive(token, number) and comments:
                comments.pop()
            piece, continues = self._continued("" if is_comment else token)
            if not continues and not piece:
                continue
            lead = len(raw) - len(trim_left_space(raw))
            self._instruction(piece, continues, number, lead, tuple(comments))
            comments = []
        return self.nodes, self.warnings, self._directive_values()

    def _instruction(self, first: str, continues: bool, start: int, lead: int, comments: tuple[str, ...]) -> None:
        lines = self.lines
        pieces = [first]
        segments = [(0, start, lead + 1)]
        offset = len(first)
        empty_continuation = False
        while continues and self.next < len(lines):
            raw = lines[self.next]
            self.next += 1
            if trim_left_space(raw).startswith("#"):
                continue  # a comment line inside a continued instruction is dropped entirely
            text = raw.rstrip("\r")
            if not trim_left_space(text):
                empty_continuation = True
                continue
            piece, continues = self._continued(text)
            segments.append((offset, self.next, 1))
            pieces.append(piece)
            offset += len(piece)
        logical = "".join(pieces)
        if empty_continuation:
            self.warnings.append(ParseWarning("NoEmptyContinuation", "Empty continuation line found in: " + logical,
                                              self.next, NO_EMPTY_CONTINUATION_URL))
        positions = Positions(tuple(segments))
        try:
            parsed = parse_line(logical, self.escape)
        except ParseError as e:
            line, column = positions.at(0)
            self.error(e.reason, line, column, e.hint)
            return
        heredocs = self._heredocs(parsed, logical, start)
        if heredocs is None:
            return
        self.nodes.append(_node(parsed, positions, start, self.next, heredocs, comments))

    def _heredocs(self, parsed: Line, logical: str, start: int) -> tuple[Heredoc, ...] | None:
        target = parsed.child if parsed.keyword.lower() == "onbuild" and parsed.child else parsed
        if target.keyword.lower() not in HEREDOC_KEYWORDS or target.json or "<<" not in logical:
            return ()
        try:
            markers = markers_in_line(logical)
        except HeredocError as e:
            self.error(str(e), start)
            return None
        found = []
        for marker in markers:
            body: list[str] = []
            terminated = False
            while self.next < len(self.lines):
                raw = self.lines[self.next]
                self.next += 1
                candidate = raw.rstrip("\r")
                if marker.chomp:
                    candidate = candidate.lstrip("\t")
                if candidate == marker.name:
                    terminated = True
                    break
                body.append(raw + "\n" if self.next < len(self.lines) or self.final_newline else raw)
            if not terminated:
                self.error("unterminated heredoc", start, hint=f"end the heredoc with a line holding only {marker.name}")
                return None
            found.append(Heredoc(marker.name, marker.fd, marker.expand, marker.chomp, "".join(body)))
        return tuple(found)


def _node(parsed: Line, positions: Positions, start: int, end: int, heredocs: tuple[Heredoc, ...],
          comments: tuple[str, ...]) -> Node:
    child = _node(parsed.child, positions, start, end, (), ()) if parsed.child else None
    return Node(
        keyword=parsed.keyword,
        flags=parsed.flags,
        args=parsed.args,
        json=parsed.json,
        heredocs=heredocs,
        original=parsed.original,
        start_line=start,
        end_line=end,
        column=positions.at(parsed.keyword_offset)[1],
        child=child,
        comments=comments,
        positions=Positions(positions.segments, parsed.keyword_offset, parsed.flag_offsets, parsed.args_offset),
    )


@contextmanager
def no_gc() -> Iterator[None]:
    """Parsing allocates many small objects and makes no reference cycles; the cyclic collector's
    full passes over the growing result would make big files superlinear, so it waits."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def scan(data: str | bytes, file: str = "Buildfile") -> tuple[NodeTree, list[ParseError]]:
    """The nodes that parsed, and every error found (an empty file is an error)."""
    errors: list[ParseError] = []
    with no_gc():
        lines = _decode(data, file, errors)
        final_newline = data.endswith(b"\n") if isinstance(data, bytes) else data.endswith("\n")
        scanner = _Scanner(lines, file, errors, final_newline=final_newline)
        nodes, warnings, directives = scanner.run()
    if not nodes and not errors:
        errors.append(ParseError("file with no instructions", file=file, line=max(len(lines), 1), column=1,
                                 hint="a Buildfile needs at least a FROM instruction"))
    return NodeTree(file=file, nodes=tuple(nodes), directives=directives, warnings=tuple(warnings)), errors


def parse_nodes(data: str | bytes, file: str = "Buildfile") -> NodeTree:
    """The node level of a Buildfile (BuildKit's `parser.Parse`).

    Raises ParseErrors listing every problem found: invalid UTF-8, NUL bytes, over-long lines,
    bad or repeated directives, JSON arrays holding non-strings, ENV/LABEL without values,
    unterminated heredocs, and a file with no instructions."""
    tree, errors = scan(data, file)
    if errors:
        raise ParseErrors(errors)
    return tree
