"""The walk of a commit: every path of a tree in layer order, with what kind of entry it is.

Depth first, a directory before its contents, entries sorted bytewise per directory with whiteouts
first (layer_tar.layer_order). The kind comes from the directory listing's d_type, so the walk
costs one getdents per directory and no call per file: only entries that are neither regular files,
directories nor symlinks are stat'ed here (a whiteout is a character device 0/0, and sockets are
left out). Everything else about an entry is read where it is written (entry_writer.py), which may
be another process.

Directories are opened from their parent's descriptor without following symlinks; a directory
swapped for a symlink while we walk cannot lead outside the tree.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator

from layerstore.dir_chain import DIR_FLAGS
from layerstore.layer_tar import WHITEOUT_PREFIX, WhiteoutNameError, layer_order
from layerstore.tar_format import show_name
from pybuild.errors import StoreError

# What the walk says an entry is. A walked entry is (kind, path relative to the root); for a
# WHITEOUT the path is already the `.wh.` name.
WHITEOUT, FILE, DIR, LINK, OTHER = range(5)
Walked = tuple[int, bytes]
_SOCKET = -1

_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
KEEP_OPEN = 128  # directory descriptors held along the current path; shallower ones are reopened


def listing(dir_fd: int) -> list[tuple[bool, bytes, int]]:
    """The entries of the open directory `dir_fd` in layer order: (not a whiteout, name, kind)."""
    entries = []
    with os.scandir(dir_fd) as it:
        for d in it:
            name = d.name.encode(_FS_ENCODING, _FS_ERRORS)  # os.fsencode, inlined
            # d_type answers these three without a call (a file system without it: one lstat)
            if d.is_file(follow_symlinks=False):
                entries.append((True, name, FILE))
            elif d.is_dir(follow_symlinks=False):
                entries.append((True, name, DIR))
            elif d.is_symlink():
                entries.append((True, name, LINK))
            else:
                st = d.stat(follow_symlinks=False)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    entries.append((False, name, WHITEOUT))
                else:
                    entries.append((True, name, _SOCKET if stat.S_ISSOCK(st.st_mode) else OTHER))
    return layer_order(entries)


class _Level:
    """One directory on the current path: its entries' name prefix, its descriptor (-1 while
    closed to save descriptors; then its identity is kept), and the entries still to visit."""

    __slots__ = ("prefix", "fd", "ident", "entries")

    def __init__(self, prefix: bytes, fd: int, entries: list[tuple[bool, bytes, int]]) -> None:
        self.prefix = prefix
        self.fd = fd
        self.ident = (0, 0)
        self.entries = iter(entries)

    def close_for_now(self) -> None:
        st = os.fstat(self.fd)
        self.ident = (st.st_dev, st.st_ino)
        os.close(self.fd)
        self.fd = -1


def tree_entries(root: bytes, root_fd: int) -> Iterator[Walked]:
    """Every entry below `root_fd` (the open tree `root`, which stays the caller's) in layer order.
    Raises WhiteoutNameError for a real `.wh.*` file (or other non-whiteout), StoreError if the
    tree is moved about under the walk."""
    top = _Level(b"", root_fd, listing(root_fd))
    stack = [top]
    try:
        while stack:
            level = stack[-1]
            prefix = level.prefix
            child = None
            for not_whiteout, name, kind in level.entries:
                if not not_whiteout:
                    yield (WHITEOUT, prefix + WHITEOUT_PREFIX + name)
                    continue
                if name.startswith(WHITEOUT_PREFIX):
                    raise WhiteoutNameError(
                        f"{show_name(os.path.join(root, prefix + name))}: a file named '.wh.*' cannot be stored "
                        "in a layer (the name means a deletion)",
                        hint="rename or remove it before committing",
                    )
                if kind == _SOCKET:
                    continue
                rel = prefix + name
                yield (kind, rel)
                if kind == DIR:
                    fd = os.open(name, DIR_FLAGS, dir_fd=level.fd)
                    try:
                        child = _Level(rel + b"/", fd, listing(fd))
                    except BaseException:
                        os.close(fd)
                        raise
                    break
            if child is not None:
                stack.append(child)
                if len(stack) > KEEP_OPEN + 1:
                    far = stack[-KEEP_OPEN - 2]
                    if far.fd != -1 and far is not top:
                        far.close_for_now()
                continue
            stack.pop()
            if level is not top:
                if stack[-1].fd == -1:
                    stack[-1].fd = _reopen_parent(root, level, stack[-1])
                os.close(level.fd)
                level.fd = -1
    finally:
        for level in stack:
            if level is not top and level.fd != -1:
                os.close(level.fd)


def _reopen_parent(root: bytes, child: _Level, parent: _Level) -> int:
    """`parent`'s descriptor, closed to save descriptors, again: `..` of its open child, checked to
    be the same directory (a tree moved about under the walk is an error, not a way out)."""
    fd = os.open(b"..", DIR_FLAGS, dir_fd=child.fd)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != parent.ident:
        os.close(fd)
        raise StoreError(f"{show_name(os.path.join(root, parent.prefix))}: directory moved while it was being committed")
    return fd
