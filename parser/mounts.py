"""`RUN --mount`, `--device`, `--network` and `--security` (BuildKit's commands_run*.go).

A `--mount` value is a CSV record of `key=value` fields (keys case-insensitive; `ro`, `readonly`,
`rw`, `readwrite` and `required` may stand alone). Its values are expanded by the builder with the
stage's variables, so the parser keeps them unexpanded in a `MountSpec`; `MountSpec.resolve(expand)`
turns it into a checked `Mount`. When no value uses a variable, the parser resolves the spec
itself, so field errors are reported at parse time with the line they are on.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

from parser.gotext import go_quote, parse_bool, parse_int, ram_in_bytes, suggest

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
NETWORK_MODES = ("default", "none", "host")
SECURITY_MODES = ("sandbox", "insecure")
_KEYS = ("type", "from", "source", "target", "readonly", "id", "sharing", "required", "mode", "uid", "gid",
         "src", "dst", "destination", "ro", "rw", "readwrite", "size", "env")
_VARIABLE = re.compile(r"\$.", re.S)


class MountError(ValueError):
    """A `--mount`/`--device` value BuildKit rejects; the message is BuildKit's."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def csv_record(text: str, what: str) -> list[str]:
    """The first record of `text` as Go's encoding/csv reads it (`"` quoting, `""` escapes, a
    quote only at the start of a field); `what` ("mounts", "devices") names it in errors."""
    try:
        return _csv_record(text)
    except MountError as e:
        raise MountError(f"failed to parse csv {what}: {e}") from None


def _csv_record(text: str) -> list[str]:
    if text == "":
        raise MountError("EOF")
    fields: list[str] = []
    pos = 0
    n = len(text)
    while True:
        if pos < n and text[pos] == '"':
            field: list[str] = []
            pos += 1
            while True:
                close = text.find('"', pos)
                if close < 0:
                    raise MountError(f'parse error on line 1, column {n + 1}: extraneous or missing " in quoted-field')
                field.append(text[pos:close])
                pos = close + 1
                if text.startswith('"', pos):
                    field.append('"')
                    pos += 1
                elif pos >= n or text[pos] == ",":
                    break
                else:
                    raise MountError(f'parse error on line 1, column {pos + 1}: extraneous or missing " in quoted-field')
            fields.append("".join(field))
        else:
            comma = text.find(",", pos)
            end = n if comma < 0 else comma
            value = text[pos:end]
            if '"' in value:
                column = pos + value.index('"') + 1
                raise MountError(f'parse error on line 1, column {column}: bare " in non-quoted-field')
            fields.append(value)
            pos = end
        if pos >= n:
            return fields
        pos += 1  # the comma
        if pos >= n:
            fields.append("")
            return fields


@dataclass(frozen=True)
class Mount:
    """A checked `RUN --mount` (BuildKit's types.Mount). Defaults that depend on the stage (a
    relative target, a secret's `/run/secrets/<id>`) are the builder's to apply."""

    type: str = "bind"
    from_: str | None = None
    source: str | None = None
    target: str | None = None
    readonly: bool = True
    cache_id: str | None = None
    sharing: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    size_limit: int | None = None
    env: str | None = None


def _bad(key: str, value: str) -> MountError:
    return MountError(f"invalid value for {key}: {value}")


def _uint(key: str, value: str, base: int) -> int:
    try:
        return parse_int(value, base, 32, signed=False)
    except ValueError:
        raise MountError(f"invalid value {value} for {key}") from None


@dataclass(frozen=True)
class MountSpec:
    """One `--mount` value as written: its fields in order, values unexpanded."""

    text: str
    fields: tuple[tuple[str, str | None], ...]  # (key lower-cased, value or None for a bare key)

    @classmethod
    def parse(cls, text: str) -> MountSpec:
        """The field syntax (CSV, keys); raises MountError."""
        record = csv_record(text, "mounts")
        fields: list[tuple[str, str | None]] = []
        for field in record:
            key, eq, value = field.partition("=")
            key = key.lower()
            if not eq:
                if key not in ("readonly", "ro", "readwrite", "rw", "required"):
                    raise MountError(f"invalid field '{field}' must be a key=value pair")
                fields.append((key, None))
                continue
            if key not in _KEYS:
                match = suggest(key, _KEYS, case_sensitive=True)
                raise MountError(f"unexpected key '{key}' in '{field}'", f"did you mean {match}?" if match else None)
            if key == "from" and _VARIABLE.search(value):
                raise MountError(f"'{key}' doesn't support variable expansion, define alias stage instead")
            fields.append((key, value))
        return cls(text=text, fields=tuple(fields))

    @property
    def uses_variables(self) -> bool:
        return any(v is not None and "$" in v for _, v in self.fields)

    def resolve(self, expand: Callable[[str], str]) -> Mount:
        """The mount with every value expanded by `expand` (parseMount + validateMount)."""
        m: dict[str, object] = {"type": "bind"}
        ro_auto = True
        for key, raw in self.fields:
            kind = m["type"]
            if raw is None:
                if key in ("readonly", "ro", "readwrite", "rw"):
                    m["readonly"] = key in ("readonly", "ro")
                    ro_auto = False
                elif kind in ("secret", "ssh"):
                    m["required"] = True
                else:
                    raise MountError(f"unexpected key '{key}' for mount type '{kind}'")
                continue
            value = expand(raw)
            if key == "type":
                if value.lower() not in MOUNT_TYPES:
                    match = suggest(value, MOUNT_TYPES, case_sensitive=True)
                    raise MountError(f"unsupported mount type {go_quote(value)}",
                                     f"did you mean {match}?" if match else "types: " + ", ".join(MOUNT_TYPES))
                m["type"] = value.lower()
            elif key in ("readonly", "ro", "readwrite", "rw"):
                try:
                    flag = parse_bool(value)
                except ValueError:
                    raise _bad(key, value) from None
                m["readonly"] = flag if key in ("readonly", "ro") else not flag
                ro_auto = False
            elif key == "required" or key == "size":
                if (key == "required" and kind not in ("secret", "ssh")) or (key == "size" and kind != "tmpfs"):
                    raise MountError(f"unexpected key '{key}' for mount type '{kind}'")
                try:
                    m[key if key == "required" else "size_limit"] = (
                        parse_bool(value) if key == "required" else ram_in_bytes(value))
                except ValueError:
                    raise _bad(key, value) from None
            elif key == "sharing":
                if value.lower() not in SHARING_MODES:
                    raise MountError(f"unsupported sharing value {go_quote(value)}")
                m["sharing"] = value.lower()
            elif key in ("mode", "uid", "gid"):
                m[key] = _uint(key, value, 8 if key == "mode" else 10)
            else:
                attr = {"from": "from_", "src": "source", "dst": "target", "destination": "target",
                        "id": "cache_id"}.get(key, key)
                m[attr] = value
        return _validated(Mount(**m), ro_auto)  # type: ignore[arg-type]


def _validated(m: Mount, ro_auto: bool) -> Mount:
    if m.type not in ("secret", "ssh", "cache"):
        for key in ("mode", "uid", "gid"):
            if getattr(m, key) is not None:
                raise MountError(f"{key} not allowed for {go_quote(m.type)} type mounts")
    if ro_auto:
        m = dataclasses.replace(m, readonly=m.type not in ("cache", "tmpfs"))
    if m.type == "secret":
        if m.from_:
            raise MountError("secret mount should not have a from")
        if m.sharing:
            raise MountError("secret mount should not define sharing")
        if not m.source and not m.target and not m.cache_id and m.env is None:
            raise MountError("invalid secret mount. one of source, target required")
        if m.source and m.cache_id:
            raise MountError("both source and id can't be set")
    if m.sharing and m.type != "cache":
        raise MountError(f"invalid cache sharing set for {m.type} mount")
    if m.target is not None and m.target.startswith("/") and posixpath.normpath(m.target) in ("/", "//"):
        raise MountError(f"invalid mount target {go_quote(m.target)}")
    return m


@dataclass(frozen=True)
class Device:
    """`RUN --device=<CDI name>[,required]` (the name may itself hold `=`)."""

    name: str
    required: bool = False

    @classmethod
    def parse(cls, text: str) -> Device:
        """BuildKit's ParseDevice; raises MountError."""
        record = csv_record(text, "devices")
        name = ""
        required = False
        for field in record:
            key, eq, value = field.partition("=")
            key = key.lower()
            if key == "required":
                if eq:
                    try:
                        required = parse_bool(value)
                    except ValueError:
                        raise _bad(key, value) from None
                else:
                    required = True
            elif key == "name" and eq:
                if name:
                    raise MountError(f"device name already set to {name}")
                name = value
            elif not name:
                name = field
            elif not eq:
                raise MountError(f"invalid field '{field}' must be a key=value pair")
            else:
                raise MountError(f"unexpected key '{key}' in '{field}'")
        return cls(name=name, required=required)


def check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> str:
    """`--network` and `--security`: one of a fixed set (not expanded)."""
    if value not in allowed:
        raise MountError(f"unsupported {kind} mode {go_quote(value)}", f"use one of: {', '.join(allowed)}")
    return value
