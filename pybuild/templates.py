"""`--format` templates: the part of Go's text/template that docker users write in their scripts.

`docker images --format '{{.Repository}}:{{.Tag}}'`, `docker inspect -f '{{.State.Pid}}'` and
`docker ps --format 'table {{.ID}}\\t{{.Names}}'` must work unchanged, so this reads the same
text: literal text and `{{ }}` actions (with `{{-`/`-}}` trimming), each a pipeline of commands
joined by `|`, a command being a field path (`.`, `.A.B`), a string, raw-string or number literal,
or a function with arguments: the docker CLI's `json`, `join`, `split`, `lower`, `upper`, `title`,
`pad`, `truncate`, and Go's `index`, `len`, `print`, `println`, `printf`. Control structures
(`if`, `range`, `with`, ...), variables and parentheses are refused with an error naming the
column, not misread. Values print as Go prints them (`map[k:v]`, `[a b]`, `<no value>` for a
missing key). As in the docker CLI, a leading `table` makes a header row (the template rendered
over the column names) and aligned columns, and `\\t` and `\\n` in the text are a tab and a newline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pybuild.errors import ParseError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(?P<field>\.(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?)'
                    r'|(?P<string>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<number>-?\d+)'
                    r'|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<pipe>\|))')
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
             "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "call", "html", "js", "urlquery", "slice"}


class _NoValue:
    """A missing map key, which Go prints as `<no value>`."""

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()
_NOTHING = object()  # what a pipeline's first command is handed


@dataclass(frozen=True)
class _Arg:
    kind: str  # field, literal, name
    value: Any
    column: int


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and actions (pipelines of commands of arguments)."""

    parts: tuple[str | tuple[tuple[_Arg, ...], ...], ...]
    table: bool

    def render(self, data: Any, *, strict: Sequence[str] | None = None) -> str:
        """The text for `data`. `strict`: the only field names `data` (a flat row) has; any other
        is an error, as a Go struct's unknown field is (a map's missing key prints `<no value>`)."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = _NOTHING
            for command in part:
                value = _run(command, data, strict, piped=value)
            out.append(go_print(value))
        return "".join(out)


def parse_format(text: str) -> Template:
    """`text` as given to `--format`; raises ParseError (`--format:1:COLUMN: ...`, the column
    counted in the template after any `table`)."""
    source = text.strip(" ")
    table = source.startswith("table")
    if table:
        source = source[len("table"):].strip(" ")
    source = source.replace("\\t", "\t").replace("\\n", "\n")
    parts: list[str | tuple[tuple[_Arg, ...], ...]] = []
    pos = 0
    trim = False  # the action before asked (`-}}`) to trim the space after it
    for m in _ACTION.finditer(source):
        literal = source[pos:m.start()]
        literal = literal.lstrip() if trim else literal
        parts.append(literal.rstrip() if m.group(1) else literal)
        parts.append(_parse_pipeline(m.group(2), m.start(2) + 1))
        trim = bool(m.group(3))
        pos = m.end()
    rest = source[pos:].lstrip() if trim else source[pos:]
    if "{{" in rest:
        raise _error("unclosed action", pos + rest.index("{{") + 1)
    parts.append(rest)
    return Template(tuple(p for p in parts if p != ""), table)


def render_rows(template: Template, rows: Sequence[Mapping[str, Any]], headers: Mapping[str, str]) -> str:
    """Each row rendered on its own line; with `table`, a header first and the tab-separated
    cells aligned as the docker CLI aligns them. No trailing newline."""
    fields = list(headers)
    lines = [template.render(row, strict=fields) for row in rows]
    if not template.table:
        return "\n".join(lines)
    from pybuild.formatting import table

    cells = [line.split("\t") for line in [template.render(dict(headers), strict=fields), *lines]]
    width = max(len(row) for row in cells)  # a value holding a tab makes a row longer
    aligned = table([row + [""] * (width - len(row)) for row in cells])
    return "\n".join(line.rstrip(" ") for line in aligned.split("\n"))


def go_print(value: Any) -> str:
    """`value` as Go's fmt prints it (the %v verb)."""
    if value is None:
        return "<nil>"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_print(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_print(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _error(message: str, column: int) -> ParseError:
    return ParseError(message, file="--format", line=1, column=column,
                      hint="pybuild reads field paths ({{.Field.Sub}}) and the functions json, join, split, "
                           "lower, upper, title, pad, truncate, index, len, print, println, printf")


def _parse_pipeline(text: str, column: int) -> tuple[tuple[_Arg, ...], ...]:
    commands: list[list[_Arg]] = [[]]
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        at = column + pos + (len(text[pos:]) - len(text[pos:].lstrip()))
        if m is None:
            raise _error(f"unexpected {text[pos:].strip()[:10]!r} in action (no variables, parentheses "
                         "or control structures)", at)
        pos = m.end()
        kind = m.lastgroup
        token = m.group(kind or "")
        if kind == "pipe":
            if not commands[-1]:
                raise _error("missing command before '|'", at)
            commands.append([])
        elif kind == "field":
            commands[-1].append(_Arg("field", tuple(p for p in token.split(".") if p), at))
        elif kind == "string":
            commands[-1].append(_Arg("literal", json.loads(token), at))
        elif kind == "raw":
            commands[-1].append(_Arg("literal", token[1:-1], at))
        elif kind == "number":
            commands[-1].append(_Arg("literal", int(token), at))
        else:
            if token in _KEYWORDS:
                raise _error(f"{token!r} is not supported in --format", at)
            if token not in _FUNCTIONS:
                raise _error(f"function {token!r} not defined", at)
            commands[-1].append(_Arg("name", token, at))
    if not commands[-1]:
        raise _error("missing value for command" if len(commands) > 1 else "empty action", column)
    for command in commands:
        if command[0].kind != "name" and len(command) > 1:
            raise _error("can't give argument to non-function", command[1].column)
    return tuple(tuple(c) for c in commands)


def _run(command: tuple[_Arg, ...], data: Any, strict: Sequence[str] | None, *, piped: Any) -> Any:
    head = command[0]
    if head.kind != "name":
        if piped is not _NOTHING:
            raise _error("can't give argument to non-function", head.column)
        return _value(head, data, strict)
    args = [_value(a, data, strict) for a in command[1:]] + ([] if piped is _NOTHING else [piped])
    try:
        return _FUNCTIONS[head.value](*args)
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise _error(f"error calling {head.value}: {e}", head.column) from None


def _value(arg: _Arg, data: Any, strict: Sequence[str] | None) -> Any:
    if arg.kind != "field":
        return arg.value
    value = data
    for depth, name in enumerate(arg.value):
        if strict is not None and depth == 0 and name not in strict:
            raise _error(f"can't evaluate field {name} (fields: {', '.join(strict)})", arg.column)
        if isinstance(value, Mapping):
            value = value.get(name, NO_VALUE)
        elif value is NO_VALUE or value is None:
            return NO_VALUE
        else:
            raise _error(f"can't evaluate field {name} in type {type(value).__name__}", arg.column)
    return value


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key, "")
        else:
            value = value[key]
    return value


def _printf(fmt: str, *args: Any) -> str:
    values = iter(args)

    def verb(m: re.Match[str]) -> str:
        if m.group(1) == "%":
            return "%"
        value = next(values, NO_VALUE)
        return json.dumps(go_print(value)) if m.group(1) == "q" else go_print(value)

    return re.sub(r"%([vsdq%])", verb, fmt)


def _sprint(*args: Any) -> str:
    # Go's Sprint puts a space between operands when neither is a string
    out = ""
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_print(a)
    return out


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": lambda v: "null" if v is NO_VALUE else json.dumps(v, ensure_ascii=False, separators=(",", ":")),
    "join": lambda items, sep: sep.join(go_print(i) for i in items),
    "split": lambda s, sep: go_print(s).split(sep),
    "lower": lambda s: go_print(s).lower(),
    "upper": lambda s: go_print(s).upper(),
    "title": lambda s: re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), go_print(s)),
    "pad": lambda s, before, after: " " * before + go_print(s) + " " * after,
    "truncate": lambda s, n: go_print(s)[:n],
    "index": _index,
    "len": lambda v: len(v),
    "print": _sprint,
    "println": lambda *a: " ".join(go_print(x) for x in a) + "\n",
    "printf": _printf,
}
