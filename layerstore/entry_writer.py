"""Walked entries (tree_walk.py) -> tar bytes: everything a commit reads about an entry is read here.

`EntryWriter.write_run` turns a run of consecutive walked entries into their tar bytes and a list
of `Event`s, the points where the bytes cannot be decided alone:
- a regular file of at least BIG bytes, or one that would make the run's bytes exceed RUN_BYTES:
  no bytes here; the process that feeds the sink streams it in its place (`stream`), so large
  contents are read once and never copied between processes;
- an entry with several links (not a directory): its bytes are here in full, but if an earlier
  path of the layer has the same inode it becomes a hardlink entry to that path instead, which
  only the process that sees the runs in order can tell (layer_tar.Emitter).
A run may be written in this process or in a worker (tree_workers.py): the writer reaches each
entry through its own directory descriptors (dir_chain.DirChain), opened without following
symlinks from the tree's descriptor.

Per regular file: fstatat, open, flistxattr, read, close, and one header.
"""

from __future__ import annotations

import os
import stat
from typing import Protocol

from layerstore.dir_chain import DIR_FLAGS, DirChain
from layerstore.layer_tar import OPAQUE_MARKER, clamp_mtime, dir_xattrs, xattrs_from, xattrs_of
from layerstore.tar_format import (
    BLOCK,
    BLOCKDEV,
    CHAR,
    DIRECTORY,
    FIFO,
    REGULAR,
    SYMLINK,
    encode_fields,
    regular_header,
    show_name,
)
from layerstore.tree_walk import DIR, FILE, LINK, OTHER, WHITEOUT, Walked
from pybuild.errors import StoreError

READ_SIZE = 1 << 20
BIG = 256 << 10  # a regular file at least this large is streamed by the sink's process
RUN_BYTES = 2 << 20  # at most this much file content in one run's bytes

# (offset in the run's bytes, length there (0: stream it), inode key if several links else None,
#  (path, mode, uid, gid, size, mtime))
Event = tuple[int, int, "tuple[int, int] | None", tuple[bytes, int, int, int, int, int]]

_S_IFMT = 0o170000
_EXPECTED = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, LINK: stat.S_IFLNK}
_DEVICES = {stat.S_IFCHR: CHAR, stat.S_IFBLK: BLOCKDEV, stat.S_IFIFO: FIFO}
# O_NONBLOCK: a file swapped for a FIFO after its stat must not hang the commit
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_PADDING = [b"\0" * (-n % BLOCK) for n in range(BLOCK)]


class Output(Protocol):
    """Where `stream` writes: `add(bytes)` in order; `sink`, which may lend read buffers."""

    @property
    def sink(self) -> object: ...

    def add(self, data: bytes) -> None: ...
    def flush(self) -> None: ...


def _open_dir(parent: int, name: bytes, what: bytes, create: bool) -> int:
    return os.open(name, DIR_FLAGS, dir_fd=parent)


class EntryWriter:
    """Writes walked entries of the tree `root` (open as `root_fd`), mtimes clamped to
    `source_date_epoch` when set."""

    def __init__(self, root: bytes, root_fd: int, source_date_epoch: int | None) -> None:
        self.root = root
        self.epoch = source_date_epoch
        self._dirs = DirChain(root_fd, _open_dir)
        self._parent = b""  # the directory of the last entry, and its descriptor
        self._parent_fd = root_fd

    def close(self) -> None:
        self._dirs.close()

    def _dir_of(self, rel: bytes) -> tuple[int, bytes]:
        """The open parent directory of `rel`, and `rel`'s last component."""
        parent, _, name = rel.rpartition(b"/")
        if parent != self._parent:
            self._parent_fd = self._dirs.open(tuple(parent.split(b"/")) if parent else (), what=rel)
            self._parent = parent
        return self._parent_fd, name

    def write_run(self, run: list[Walked]) -> tuple[bytes, list[Event]]:
        """The tar bytes of `run` and its events (see the module doc)."""
        parts: list[bytes] = []
        events: list[Event] = []
        offset = 0
        epoch = self.epoch
        for kind, rel in run:
            if kind == WHITEOUT:
                header = encode_fields(rel, REGULAR, 0)
                parts.append(header)
                offset += len(header)
                continue
            dir_fd, name = self._dir_of(rel)
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            mode, uid, gid = st.st_mode, st.st_uid, st.st_gid
            fmt = mode & _S_IFMT
            if _EXPECTED.get(kind, fmt) != fmt or (kind == OTHER and fmt not in _DEVICES):
                raise StoreError(f"{show_name(os.path.join(self.root, rel))}: changed while it was being committed")
            mtime = clamp_mtime(st.st_mtime_ns, epoch)
            key = (st.st_dev, st.st_ino) if st.st_nlink > 1 and kind != DIR else None
            size = 0
            if kind == FILE:
                size = st.st_size
                if size >= BIG or offset + size > RUN_BYTES:
                    events.append((offset, 0, key, (rel, mode, uid, gid, size, mtime)))
                    continue
                n = self._file(dir_fd, name, rel, mode, uid, gid, size, mtime, parts)
            else:
                if kind == DIR:
                    # opened as the chain's next directory: its entries, written next, are in it
                    fd = self._dirs.open(tuple(rel.split(b"/")), what=rel)
                    self._parent, self._parent_fd = rel, fd
                    xattrs, opaque = dir_xattrs(fd)
                    header = encode_fields(rel, DIRECTORY, mode, uid, gid, 0, mtime, b"", 0, 0, xattrs)
                    if opaque:
                        # layer.md: the opaque marker follows its directory's own entry
                        header += encode_fields(rel + b"/" + OPAQUE_MARKER, REGULAR, 0, uid, gid)
                elif kind == LINK:
                    header = encode_fields(rel, SYMLINK, mode, uid, gid, 0, mtime, os.readlink(name, dir_fd=dir_fd))
                else:
                    rdev = st.st_rdev if fmt != stat.S_IFIFO else 0
                    header = encode_fields(
                        rel, _DEVICES[fmt], mode, uid, gid, 0, mtime, b"", os.major(rdev), os.minor(rdev),
                        xattrs_of(os.path.join(self.root, rel)),
                    )
                parts.append(header)
                n = len(header)
            if key is not None:
                events.append((offset, n, key, (rel, mode, uid, gid, size, mtime)))
            offset += n
        return b"".join(parts), events

    def _file(self, dir_fd: int, name: bytes, rel: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
              parts: list[bytes]) -> int:
        """Append the header, contents and padding of a regular file smaller than BIG (one read);
        their length."""
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        try:
            try:
                names = os.listxattr(fd)  # xattrs_of, in two steps: most files have none
            except OSError:
                names = []
            header = regular_header(rel, mode, uid, gid, size, mtime, xattrs_from(fd, names) if names else ())
            data = os.read(fd, size) if size else b""
            while len(data) < size:
                more = os.read(fd, size - len(data))
                if not more:
                    raise self._shrank(rel)
                data += more
        finally:
            os.close(fd)
        pad = _PADDING[size % BLOCK]
        parts += (header, data, pad)
        return len(header) + size + len(pad)

    def stream(self, what: tuple[bytes, int, int, int, int, int], out: Output) -> None:
        """A large regular file (an Event's entry): its header, then its contents in READ_SIZE
        pieces, read into buffers the sink lends where it does (layer_sink.LayerSink.lend)."""
        rel, mode, uid, gid, size, mtime = what
        dir_fd, name = self._dir_of(rel)
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        try:
            out.add(regular_header(rel, mode, uid, gid, size, mtime, xattrs_of(fd)))
            sink = out.sink
            lend = getattr(sink, "lend", None)
            left = size
            while left:
                if lend is not None:
                    buf = lend()
                    n = os.readv(fd, [memoryview(buf)[: min(left, len(buf))]])
                    if n:
                        out.flush()
                        sink.take(buf, n)  # type: ignore[attr-defined]
                else:
                    # a fresh bytes object per read: the sink may hand it to another thread without copying
                    data = os.read(fd, min(left, READ_SIZE))
                    n = len(data)
                    if n:
                        out.add(data)
                if not n:
                    raise self._shrank(rel)
                left -= n
            out.add(_PADDING[size % BLOCK])
        finally:
            os.close(fd)

    def _shrank(self, rel: bytes) -> StoreError:
        return StoreError(f"{show_name(os.path.join(self.root, rel))}: file shrank while it was being read")
