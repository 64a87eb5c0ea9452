"""Directory (or overlay upper directory) -> layer tar, deterministically and in one streaming pass.

The rules (DESIGN.md section 3) make the same tree give the same bytes on any machine:
PAX format, relative names, entries sorted bytewise per directory with whiteouts first, numeric
ids with empty user and group names, integer mtimes clamped to SOURCE_DATE_EPOCH when it is set,
hardlinks pointing at the first path (in that order) of their inode, sockets skipped. Overlay
whiteouts (character devices 0/0) become `.wh.NAME` entries and opaque directories get a
`.wh..wh..opq` entry after their own. Only `security.capability` and `user.*` extended attributes
are kept (never the overlay's own `*.overlay.*`).

Memory stays bounded whatever the tree's size: contents stream in READ_SIZE chunks, and only one
directory listing per level of depth and the inode map of multiply-linked files are held.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import xattr

from layerstore.tar_format import (
    BLOCKDEV,
    CHAR,
    DIRECTORY,
    END_OF_ARCHIVE,
    FIFO,
    HARDLINK,
    REGULAR,
    SYMLINK,
    TarEntry,
    encode_header,
    padding,
    show_name,
)
from pybuild.errors import StoreError

WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"
OPAQUE_XATTRS = (b"trusted.overlay.opaque", b"user.overlay.opaque")
READ_SIZE = 1 << 20
_BUFFER = 1 << 20

Sink = Callable[[bytes], object]


class WhiteoutNameError(StoreError):
    """A real file whose name starts with `.wh.`: a layer cannot carry it (it means a deletion)."""


@dataclass(frozen=True, slots=True)
class _Node:
    rel: bytes  # path relative to the root, no leading ./
    name: bytes
    st: os.stat_result
    is_whiteout: bool  # the kernel shares one whiteout inode: test for it before hardlinks


def keep_xattr(name: bytes) -> bool:
    """Which extended attributes a layer carries: file capabilities and user attributes, never
    the overlay's bookkeeping (`trusted.overlay.*`, `user.overlay.*`)."""
    if b".overlay." in name or name.startswith(b"trusted.overlay"):
        return False
    return name == b"security.capability" or name.startswith(b"user.")


def clamp_mtime(mtime_ns: int, source_date_epoch: int | None) -> int:
    seconds = mtime_ns // 1_000_000_000
    if source_date_epoch is not None and seconds > source_date_epoch:
        return source_date_epoch
    return max(seconds, 0)


def _children(root: bytes, rel: bytes) -> list[_Node]:
    """A directory's entries in layer order: whiteouts first, then bytewise by name."""
    base = os.path.join(root, rel) if rel else root
    nodes = []
    prefix = rel + b"/" if rel else b""
    with os.scandir(base) as it:
        for d in it:
            st = d.stat(follow_symlinks=False)
            whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
            nodes.append(_Node(prefix + d.name, d.name, st, whiteout))
    nodes.sort(key=lambda n: (not n.is_whiteout, n.name))
    return nodes


def walk(root: bytes) -> Iterator[_Node]:
    """Every path below `root` (not `root` itself) in layer order, depth first, a directory before
    its contents. Iterative, so depth is not limited by Python's recursion limit."""
    stack = [iter(_children(root, b""))]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        yield node
        if stat.S_ISDIR(node.st.st_mode):
            stack.append(iter(_children(root, node.rel)))


def _xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    try:
        names = xattr.list(path, nofollow=True)
    except OSError:
        return ()
    kept = []
    for name in sorted(names):
        if keep_xattr(name):
            try:
                kept.append((name.decode("utf-8", "surrogateescape"), xattr.get(path, name, nofollow=True)))
            except OSError:
                continue  # removed meanwhile
    return tuple(kept)


def _is_opaque(path: bytes) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if xattr.get(path, name, nofollow=True) == b"y":
                return True
        except OSError:
            continue
    return False


class _BufferedSink:
    """Coalesces header-sized writes into large ones before they reach the hashing and
    compressing sink (one sha256/zstd call per megabyte, not per 512 bytes)."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        if len(data) >= _BUFFER:
            self.flush()
            self._sink(data)
            return
        self._buf += data
        if len(self._buf) >= _BUFFER:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._sink(bytes(self._buf))
            self._buf.clear()


def write_tree(root: str | os.PathLike[str], sink: Sink, *, source_date_epoch: int | None = None) -> int:
    """Write the layer tar of the tree at `root` to `sink` (called with successive `bytes` chunks of
    up to about a megabyte, which it may keep) and return the number of entries.

    Raises WhiteoutNameError for a real `.wh.*` file, StoreError if a file shrinks while read.
    """
    root_b = os.fsencode(root)
    out = _BufferedSink(sink)
    first_path: dict[tuple[int, int], bytes] = {}
    count = 0
    for node in walk(root_b):
        st = node.st
        mode = st.st_mode
        full = os.path.join(root_b, node.rel)
        if node.is_whiteout:
            name = os.path.join(os.path.dirname(node.rel), WHITEOUT_PREFIX + node.name)
            out.write(encode_header(TarEntry(name=name, type=REGULAR, mode=0, mtime=0)))
            count += 1
            continue
        if node.name.startswith(WHITEOUT_PREFIX):
            raise WhiteoutNameError(
                f"{show_name(full)}: a file named '.wh.*' cannot be stored in a layer (the name means a deletion)",
                hint="rename or remove it before committing",
            )
        if stat.S_ISSOCK(mode):
            continue
        kind, size, link, major, minor = _kind(mode), 0, b"", 0, 0
        if kind != DIRECTORY and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            target = first_path.get(key)
            if target is not None:
                kind, link = HARDLINK, target
            else:
                first_path[key] = node.rel
        if kind == SYMLINK:
            link = os.readlink(full)
        elif kind == REGULAR:
            size = st.st_size
        elif kind in (CHAR, BLOCKDEV):
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        entry = TarEntry(
            name=node.rel, type=kind, mode=stat.S_IMODE(mode), uid=st.st_uid, gid=st.st_gid, size=size,
            mtime=clamp_mtime(st.st_mtime_ns, source_date_epoch), linkname=link, devmajor=major, devminor=minor,
            xattrs=() if kind in (SYMLINK, HARDLINK) else _xattrs(full),
        )
        count += 1
        if kind == REGULAR:
            _copy_contents(full, size, encode_header(entry), out)
            continue
        out.write(encode_header(entry))
        if kind == DIRECTORY and _is_opaque(full):
            # layer.md: the opaque marker follows its directory's own entry
            marker = os.path.join(node.rel, OPAQUE_MARKER)
            out.write(encode_header(TarEntry(name=marker, type=REGULAR, mode=0, uid=st.st_uid, gid=st.st_gid)))
            count += 1
    out.write(END_OF_ARCHIVE)
    out.flush()
    return count


_KINDS = {stat.S_IFREG: REGULAR, stat.S_IFDIR: DIRECTORY, stat.S_IFLNK: SYMLINK, stat.S_IFCHR: CHAR,
          stat.S_IFBLK: BLOCKDEV, stat.S_IFIFO: FIFO}


def _kind(mode: int) -> bytes:
    return _KINDS[stat.S_IFMT(mode)]


def _copy_contents(path: bytes, size: int, header: bytes, out: _BufferedSink) -> None:
    """Header, contents and padding of a regular file (small files in one write)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if size < _BUFFER:
            data = os.read(fd, size) if size else b""
            while len(data) < size:
                more = os.read(fd, size - len(data))
                if not more:
                    raise StoreError(f"{show_name(path)}: file shrank while it was being read")
                data += more
            out.write(header + data + b"\0" * padding(size))
            return
        out.write(header)
        left = size
        while left:
            # a fresh bytes object per read: the sink may hand it to another thread without copying
            data = os.read(fd, min(left, READ_SIZE))
            if not data:
                raise StoreError(f"{show_name(path)}: file shrank while it was being read")
            out.write(data)
            left -= len(data)
        out.write(b"\0" * padding(size))
    finally:
        os.close(fd)
