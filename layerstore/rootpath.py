"""Resolving a path inside a root directory as if that directory were `/`.

Everything that writes into an image's file system from outside it (COPY destinations, WORKDIR
creation, volume mount points, ADD archives) must resolve paths this way: absolute symlinks are
relative to the root, `..` stops at the root, and the result can never name anything outside it
(the openat2 RESOLVE_IN_ROOT rule). The resolution is lexical over lstat/readlink, so it assumes
nothing else is changing the tree meanwhile (true for a build step or a stopped container).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pybuild.errors import PybuildError

MAX_SYMLINKS = 40  # as Linux's MAXSYMLINKS


class PathEscape(PybuildError):
    """A path that cannot be resolved inside its root (too many links)."""


def resolve_in_root(root: Path, path: str, *, follow_final: bool = True) -> Path:
    """The host path that `path` names inside `root`.

    Symlinks in every component but the last are followed (and the last one too with
    `follow_final`), each re-rooted at `root`. Components that do not exist are taken literally.
    The result is always `root` or below it.
    """
    remaining = [c for c in path.split("/") if c not in ("", ".")]
    remaining.reverse()  # a stack: next component at the end
    resolved: list[str] = []
    links = 0
    while remaining:
        name = remaining.pop()
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, name)
        is_last = not remaining
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(name)
            continue
        if stat.S_ISLNK(st.st_mode) and (follow_final or not is_last):
            links += 1
            if links > MAX_SYMLINKS:
                raise PathEscape(f"{path}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [c for c in target.split("/") if c not in ("", ".")]
            remaining.extend(reversed(parts))
            continue
        resolved.append(name)
    return Path(root, *resolved)


def is_within(root: Path, path: Path) -> bool:
    """True if `path` (already absolute and normalised) is `root` or below it."""
    r = os.path.normpath(root)
    p = os.path.normpath(path)
    return p == r or p.startswith(r.rstrip("/") + "/")
