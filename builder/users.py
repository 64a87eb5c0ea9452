"""`COPY --chown` owners, looked up in the destination image's own /etc/passwd and /etc/group.

`--chown=app:staff` names users of the image being built, never of the host (F70). The files are
read through the runner's user database reader (symlinks resolved inside the image). BuildKit's
rules, which differ from USER's (runner/users.py):
- a name must exist in the image (error otherwise); a number needs no lookup;
- a user alone gets its primary group when given by name, and the same number as group when
  given by number; a group given by name must exist, by number needs no lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pybuild.errors import PybuildError
from runner.users import GroupEntry, PasswdEntry, read_user_database

MAX_ID = 2**32 - 1


class UserError(PybuildError):
    """A --chown user or group that the image does not know."""


@dataclass(frozen=True)
class Identity:
    """Who a copied file belongs to."""

    uid: int
    gid: int


def _number(text: str) -> int | None:
    if text.isascii() and text.isdigit() and int(text) <= MAX_ID:
        return int(text)
    return None


def chown_identity(spec: str, root: Path) -> Identity:
    """The owner `COPY --chown=spec` gives files in the image whose rootfs is `root`."""
    user, _, group = spec.partition(":")
    if not user:
        raise UserError(f"--chown={spec}: a user is required")
    database: list[tuple[list[PasswdEntry], list[GroupEntry]]] = []

    def entries() -> tuple[list[PasswdEntry], list[GroupEntry]]:
        if not database:
            database.append(read_user_database(root))
        return database[0]

    uid = _number(user)
    if uid is not None:
        gid = uid
    else:
        entry = next((e for e in entries()[0] if e.name == user), None)
        if entry is None:
            raise UserError(f"--chown={spec}: unable to find user {user}: no matching entries in passwd file")
        uid, gid = entry.uid, entry.gid
    if group:
        number = _number(group)
        if number is None:
            found = next((g for g in entries()[1] if g.name == group), None)
            if found is None:
                raise UserError(f"--chown={spec}: unable to find group {group}: no matching entries in group file")
            number = found.gid
        gid = number
    return Identity(uid, gid)
