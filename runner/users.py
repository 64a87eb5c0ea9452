"""Who a container process runs as: `user[:group]` resolved against the image's /etc/passwd and
/etc/group, with Docker's (runc's `GetExecUser`) rules.

- `name` or `uid`; an entry in /etc/passwd matching the name, or the number, gives uid, primary gid
  and home. A number with no entry runs as that uid with gid 0 and home `/`; a name with no entry
  is an error.
- With no group given, the supplementary groups are those /etc/group lists the user name in.
  Giving a group (name or number) means ONLY that group: supplementary groups are dropped.
- Missing /etc/passwd or /etc/group files count as empty (so numbers still work).

Everything here is pure but `read_user_database`, which reads the two files inside a root.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from layerstore.rootpath import resolve_in_root
from pybuild.errors import RuntimeError_

MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ExecUser:
    """The credentials a process gets: uid, gid, supplementary gids and the HOME default."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = "/"

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def _int_or_none(text: str) -> int | None:
    try:
        value = int(text, 10)
    except ValueError:
        return None
    return value if text.strip() == text and not text.startswith("+") else None


def _colon_records(text: str, min_fields: int) -> list[list[str]]:
    """The colon-separated fields of each line; comments, blank and short lines skipped, as libc
    skips malformed entries."""
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            fields = line.split(":")
            if len(fields) >= min_fields:
                out.append(fields)
    return out


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Entries of an /etc/passwd file (entries with non-numeric ids skipped)."""
    entries = []
    for fields in _colon_records(text, 4):
        uid, gid = _int_or_none(fields[2]), _int_or_none(fields[3])
        if uid is not None and gid is not None:
            home = fields[5] if len(fields) > 5 and fields[5] else "/"
            entries.append(PasswdEntry(fields[0], uid, gid, home))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """Entries of an /etc/group file (entries with a non-numeric gid skipped)."""
    entries = []
    for fields in _colon_records(text, 3):
        gid = _int_or_none(fields[2])
        if gid is not None:
            members = tuple(m for m in fields[3].split(",") if m) if len(fields) > 3 else ()
            entries.append(GroupEntry(fields[0], gid, members))
    return entries


def _check_range(value: int, what: str, spec: str) -> int:
    if not 0 <= value <= MAX_ID:
        raise RuntimeError_(f"{what} {value} in user spec {spec!r} is out of range (0-{MAX_ID})")
    return value


def resolve_user(spec: str, passwd: list[PasswdEntry], groups: list[GroupEntry]) -> ExecUser:
    """Resolve `user[:group]` (names or numbers; empty means root) to the process credentials.

    Raises RuntimeError_ for a name that no entry matches, or an id out of range.
    """
    user_part, _, group_part = (spec or "").partition(":")
    user_part = user_part or "0"
    number = _int_or_none(user_part)
    match = next((e for e in passwd if e.name == user_part or (number is not None and e.uid == number)), None)
    if match is not None:
        uid, gid, home, name = match.uid, match.gid, match.home, match.name
    elif number is not None:
        uid, gid, home, name = _check_range(number, "uid", spec), 0, "/", None
    else:
        raise RuntimeError_(f"unable to find user {user_part}: no matching entries in passwd file")
    if group_part:
        gnumber = _int_or_none(group_part)
        gmatch = next((g for g in groups if g.name == group_part or (gnumber is not None and g.gid == gnumber)), None)
        if gmatch is not None:
            gid = gmatch.gid
        elif gnumber is not None:
            gid = _check_range(gnumber, "gid", spec)
        else:
            raise RuntimeError_(f"unable to find group {group_part}: no matching entries in group file")
        supplementary: tuple[int, ...] = ()
    else:
        supplementary = tuple(dict.fromkeys(g.gid for g in groups if name is not None and name in g.members))
    return ExecUser(uid, gid, supplementary, home)


def _read_in_root(root: Path, path: str) -> str:
    try:
        return resolve_in_root(root, path).read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return ""


def read_user_database(root: Path) -> tuple[list[PasswdEntry], list[GroupEntry]]:
    """The passwd and group entries of the file system at `root` (symlinks resolved inside it)."""
    return parse_passwd(_read_in_root(root, "/etc/passwd")), parse_group(_read_in_root(root, "/etc/group"))


def lookup(root: Path, spec: str) -> ExecUser:
    """`resolve_user` against the files under `root` (used from outside a container, e.g. by the
    builder for WORKDIR creation; inside a container `root` is `/`)."""
    passwd, groups = read_user_database(root)
    return resolve_user(spec, passwd, groups)


def lookup_in_layers(layers: list[Path], spec: str) -> ExecUser:
    """`resolve_user` against the /etc/passwd and /etc/group that the union of `layers` (top
    first) shows, read without mounting it: to refuse an unknown user before a container exists."""
    from runner.initlayer import union_resolve

    def read(path: str) -> str:
        parts, found = union_resolve(layers, path)
        if found is None or not stat.S_ISREG(found[0].st_mode):
            return ""
        return Path(found[1], *parts).read_text(errors="replace")

    return resolve_user(spec, parse_passwd(read("/etc/passwd")), parse_group(read("/etc/group")))
