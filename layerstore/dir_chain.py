"""Directory descriptors along one path below a root, each opened from its parent's descriptor
without following a symlink: how the extractor writes and the commit reads inside a tree that
someone else may be changing (nothing ever goes through a symlink, whatever the tree holds).

Only the current chain is kept, as a walk in tar order needs it (the next entry is nearly always
in the same directory or next to it), and of it only the deepest KEEP_OPEN descriptors: deep
trees must not exhaust the descriptor limit. What opening a component means (create it if missing,
which errors to raise) is the caller's `opener`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

# how a directory of a tree someone else may change is opened: never through a symlink
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# opener(parent descriptor, component name, what (the entry being worked on, for errors), create)
Opener = Callable[[int, bytes, bytes, bool], int]


class DirChain:
    """`open(parts)` gives the descriptor of directory `parts` below `root_fd` (which stays the
    caller's), reusing the descriptors of the previous call's path where it shares a prefix."""

    KEEP_OPEN = 64

    def __init__(self, root_fd: int, opener: Opener) -> None:
        self.root_fd = root_fd
        self._opener = opener
        self._names: list[bytes] = []
        self._fds: list[int] = []  # -1 where closed to save descriptors
        self._parts: tuple[bytes, ...] = ()  # the names along the chain, as a tuple

    def open(self, parts: tuple[bytes, ...], *, what: bytes, create: bool = False) -> int:
        """The descriptor of directory `parts`; `what` names errors. Valid until the next call."""
        if parts == self._parts and (not parts or self._fds[-1] != -1):
            return self._fds[-1] if parts else self.root_fd  # the same directory as last time
        names, fds = self._names, self._fds
        k = 0
        while k < len(names) and k < len(parts) and names[k] == parts[k]:
            k += 1
        for fd in fds[k:]:
            if fd != -1:
                os.close(fd)
        del names[k:], fds[k:]
        self._parts = parts[:k]
        if k and fds[k - 1] == -1:
            # an ancestor was closed to save descriptors: walk to it again from the root
            fds[k - 1] = walk_dirs(self.root_fd, parts[:k], self._opener, what=what)
        for name in parts[k:]:
            fds.append(self._opener(fds[-1] if fds else self.root_fd, name, what, create))
            names.append(name)
            self._parts += (name,)
            if len(fds) > self.KEEP_OPEN and fds[-self.KEEP_OPEN - 1] != -1:
                os.close(fds[-self.KEEP_OPEN - 1])
                fds[-self.KEEP_OPEN - 1] = -1
        return fds[-1] if fds else self.root_fd

    def close(self) -> None:
        """Close every descriptor of the chain (the root's stays open)."""
        for fd in self._fds:
            if fd != -1:
                os.close(fd)
        self._names, self._fds, self._parts = [], [], ()


def walk_dirs(root_fd: int, parts: tuple[bytes, ...], opener: Opener, *, what: bytes, create: bool = False) -> int:
    """A new descriptor for directory `parts` below `root_fd`, opened component by component with
    `opener` (intermediate descriptors are closed on the way)."""
    fd = os.dup(root_fd)
    try:
        for name in parts:
            nxt = opener(fd, name, what, create)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd
