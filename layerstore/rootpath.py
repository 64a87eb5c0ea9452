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
from collections.abc import Callable
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

    def lstat(parts: list[str]) -> os.stat_result | None:
        try:
            return os.lstat(os.path.join(root, *parts))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def readlink(parts: list[str]) -> str:
        return os.readlink(os.path.join(root, *parts))

    return Path(root, *resolve_parts(path, lstat=lstat, readlink=readlink, follow_final=follow_final))


def resolve_parts(
    path: str,
    *,
    lstat: Callable[[list[str]], os.stat_result | None],
    readlink: Callable[[list[str]], str],
    follow_final: bool = True,
) -> list[str]:
    """The components `path` names below a root, resolved as `resolve_in_root` does, in a tree
    seen through `lstat` (None: absent) and `readlink`, both given the components below the root:
    a directory, or a view of one such as the union of overlay layers (runner/initlayer.py)."""
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
        candidate = resolved + [name]
        st = lstat(candidate)
        if st is not None and stat.S_ISLNK(st.st_mode) and (follow_final or remaining):
            links += 1
            if links > MAX_SYMLINKS:
                raise PathEscape(f"{path}: too many levels of symbolic links")
            target = readlink(candidate)
            if target.startswith("/"):
                resolved = []
            remaining.extend(reversed([c for c in target.split("/") if c not in ("", ".")]))
            continue
        resolved.append(name)
    return resolved


def is_within(root: Path, path: Path) -> bool:
    """True if `path` (already absolute and normalised) is `root` or below it."""
    r = os.path.normpath(root)
    p = os.path.normpath(path)
    return p == r or p.startswith(r.rstrip("/") + "/")
