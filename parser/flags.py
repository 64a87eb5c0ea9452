"""Builder-flag validation per instruction (BuildKit's `instructions/bflag.go`).

Each instruction declares the flags it takes; anything else is "unknown flag" (with a suggestion),
a repeated flag that is not repeatable is an error, a bool flag takes `--f`, `--f=true|false` (any
case) but not `--f=`, and string flags need `=value`. Messages name the flag as written
(`--name`), as current BuildKit does. Unlike BuildKit, which stops at the first bad flag, every
bad flag of the instruction is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from parser.gotext import suggest
from parser.nodes import Node
from pybuild.errors import ParseError, ParseErrors


class Kind(Enum):
    BOOL = "bool"
    STRING = "string"
    STRINGS = "strings"  # repeatable


@dataclass(frozen=True)
class Flag:
    name: str
    kind: Kind
    default: str = ""


@dataclass(frozen=True)
class Values:
    """The flags an instruction was given, after validation."""

    strings: dict[str, tuple[str, ...]]
    used: frozenset[str]

    def text(self, name: str) -> str | None:
        """A string flag's value; None when absent or given as `--name=` (BuildKit's "")."""
        vals = self.strings.get(name, ())
        return vals[-1] if vals and vals[-1] != "" else None

    def flag(self, name: str) -> bool:
        vals = self.strings.get(name, ())
        return bool(vals) and vals[-1] == "true"

    def optional_flag(self, name: str) -> bool | None:
        """A bool flag that means something different when absent (ADD --unpack)."""
        return self.flag(name) if name in self.used else None

    def many(self, name: str) -> tuple[str, ...]:
        return self.strings.get(name, ())


def parse_flags(node: Node, declared: Sequence[Flag], file: str) -> Values:
    """Validate `node.flags` against the instruction's declared flags."""
    specs = {f.name: f for f in declared}
    strings: dict[str, tuple[str, ...]] = {}
    used: set[str] = set()
    errors: list[ParseError] = []
    offsets = node.positions.flags

    def fail(i: int, message: str, hint: str | None = None) -> None:
        line, column = node.at(offsets[i]) if i < len(offsets) else (node.start_line, node.column)
        errors.append(ParseError(message, file=file, line=line, column=column, hint=hint))

    for i, word in enumerate(node.flags):
        body = word[2:]
        name, eq, value = body.partition("=")
        spec = specs.get(name)
        if spec is None:
            match = suggest(name, list(specs), case_sensitive=True)
            where = f"{node.keyword.upper()} takes " + (", ".join("--" + f for f in specs) if specs else "no flags")
            fail(i, f"unknown flag: --{name}", f"did you mean --{match}?" if match else where)
            continue
        if name in used and spec.kind is not Kind.STRINGS:
            fail(i, f"duplicate flag specified: --{name}")
            continue
        used.add(name)
        if spec.kind is Kind.BOOL:
            if eq and not value:
                fail(i, f"missing a value on flag: --{name}")
                continue
            lower = value.lower() if eq else "true"
            if lower not in ("true", "false"):
                fail(i, f"expecting boolean value for flag --{name}, not: {value}")
                continue
            strings[name] = (lower,)
        elif not eq:
            fail(i, f"missing a value on flag: --{name}", f"write --{name}=VALUE")
        elif spec.kind is Kind.STRINGS:
            strings[name] = strings.get(name, ()) + (value,)
        else:
            strings[name] = (value,)
    if errors:
        raise ParseErrors(errors)
    for spec in declared:
        if spec.name not in strings and spec.default:
            strings[spec.name] = (spec.default,)
    return Values(strings=strings, used=frozenset(used))


FROM_FLAGS = (Flag("platform", Kind.STRING),)
RUN_FLAGS = (
    Flag("mount", Kind.STRINGS),
    Flag("network", Kind.STRING, "default"),
    Flag("security", Kind.STRING, "sandbox"),
    Flag("device", Kind.STRINGS),
)
_FILE_FLAGS = (
    Flag("chown", Kind.STRING),
    Flag("chmod", Kind.STRING),
    Flag("link", Kind.BOOL),
    Flag("exclude", Kind.STRINGS),
)
COPY_FLAGS = (*_FILE_FLAGS, Flag("from", Kind.STRING), Flag("parents", Kind.BOOL))
ADD_FLAGS = (*_FILE_FLAGS, Flag("keep-git-dir", Kind.BOOL), Flag("checksum", Kind.STRING), Flag("unpack", Kind.BOOL))
HEALTHCHECK_FLAGS = (
    Flag("interval", Kind.STRING),
    Flag("timeout", Kind.STRING),
    Flag("start-period", Kind.STRING),
    Flag("start-interval", Kind.STRING),
    Flag("retries", Kind.STRING),
)
NO_FLAGS: tuple[Flag, ...] = ()
