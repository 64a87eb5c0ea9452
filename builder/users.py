"""User and group names looked up in an image's own /etc/passwd and /etc/group.

`COPY --chown=app:staff` and `USER app` name users of the image being built, never of the host
(F70, F82). The files are read through `resolve_in_root`, so a symlinked /etc stays inside the
image. The rules follow BuildKit's and runc's:
- `--chown`: a name must exist (error otherwise); a number needs no lookup. A user alone gets its
  primary group when given by name, and the same number as group when given by number.
- `USER` for RUN: a name must exist; a number that is not in passwd runs with gid 0. A group given
  explicitly is the only group; otherwise the user's primary group plus every group listing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from layerstore.rootpath import resolve_in_root
from pybuild.errors import PybuildError


class UserError(PybuildError):
    """A user or group that the image does not know."""


@dataclass(frozen=True)
class Passwd:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Identity:
    """Who a file belongs to or a process runs as."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = "/"


def _read_lines(root: Path, path: str) -> list[list[str]] | None:
    host = resolve_in_root(root, path)
    try:
        text = host.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rows.append(line.split(":"))
    return rows


def read_passwd(root: Path) -> list[Passwd] | None:
    """The entries of the image's /etc/passwd (None if it has none); malformed lines skipped."""
    rows = _read_lines(root, "/etc/passwd")
    if rows is None:
        return None
    out = []
    for row in rows:
        if len(row) < 4:
            continue
        try:
            out.append(Passwd(row[0], int(row[2]), int(row[3]), row[5] if len(row) > 5 else "/"))
        except ValueError:
            continue
    return out


def read_groups(root: Path) -> list[Group] | None:
    """The entries of the image's /etc/group (None if it has none); malformed lines skipped."""
    rows = _read_lines(root, "/etc/group")
    if rows is None:
        return None
    out = []
    for row in rows:
        if len(row) < 3:
            continue
        try:
            members = tuple(m for m in row[3].split(",") if m) if len(row) > 3 else ()
            out.append(Group(row[0], int(row[2]), members))
        except ValueError:
            continue
    return out


def _number(text: str) -> int | None:
    if text.isascii() and text.isdigit():
        value = int(text)
        if value < 2**32:
            return value
    return None


def _split(spec: str) -> tuple[str, str | None]:
    user, sep, group = spec.partition(":")
    return user, (group if sep else None)


def _find_user(root: Path, name: str, *, what: str) -> Passwd:
    entries = read_passwd(root)
    if entries is None:
        raise UserError(f"{what}: unable to find user {name}: the image has no /etc/passwd")
    for entry in entries:
        if entry.name == name:
            return entry
    raise UserError(f"{what}: unable to find user {name}: no matching entries in passwd file")


def _find_group(root: Path, name: str, *, what: str) -> Group:
    entries = read_groups(root)
    if entries is None:
        raise UserError(f"{what}: unable to find group {name}: the image has no /etc/group")
    for entry in entries:
        if entry.name == name:
            return entry
    raise UserError(f"{what}: unable to find group {name}: no matching entries in group file")


def chown_identity(spec: str, root: Path) -> Identity:
    """The owner `COPY --chown=spec` gives files in the image whose rootfs is `root`."""
    user, group = _split(spec)
    if not user:
        raise UserError(f"--chown={spec}: a user is required")
    uid = _number(user)
    if uid is not None:
        gid = uid
    else:
        entry = _find_user(root, user, what=f"--chown={spec}")
        uid, gid = entry.uid, entry.gid
    if group:
        number = _number(group)
        gid = number if number is not None else _find_group(root, group, what=f"--chown={spec}").gid
    return Identity(uid, gid)


def run_identity(spec: str, root: Path) -> Identity:
    """Who a RUN step runs as for `USER spec` (empty: root), with supplementary groups."""
    if not spec:
        spec = "0"
    user, group = _split(spec)
    uid = _number(user)
    home = "/"
    gid = 0
    name: str | None = None
    passwd = read_passwd(root) or []
    entry = next((e for e in passwd if (e.uid == uid if uid is not None else e.name == user)), None)
    if entry is not None:
        uid, gid, home, name = entry.uid, entry.gid, entry.home, entry.name
    elif uid is None:
        raise UserError(f"USER {spec}: unable to find user {user}: no matching entries in passwd file")
    groups: tuple[int, ...]
    if group:
        number = _number(group)
        gid = number if number is not None else _find_group(root, group, what=f"USER {spec}").gid
        groups = (gid,)
    else:
        extra = [g.gid for g in (read_groups(root) or []) if name is not None and name in g.members]
        groups = tuple(dict.fromkeys([gid, *extra]))
    return Identity(uid, gid, groups, home)
