"""Directory (or overlay upper directory) -> layer tar, deterministically and in one streaming pass.

The rules (DESIGN.md section 3) make the same tree give the same bytes on any machine:
PAX format, relative names, entries sorted bytewise per directory with whiteouts first, numeric
ids with empty user and group names, integer mtimes clamped to SOURCE_DATE_EPOCH when it is set,
hardlinks pointing at the first path (in that order) of their inode, sockets skipped. Overlay
whiteouts (character devices 0/0) become `.wh.NAME` entries and opaque directories get a
`.wh..wh..opq` entry after their own. Only `security.capability` and `user.*` extended attributes
are kept (never the overlay's own `*.overlay.*`).

This module holds those rules and `write_tree`, which puts three parts together:
tree_walk.tree_entries walks the tree in layer order (no call per file: kinds come from the
listing); entry_writer.EntryWriter writes runs of walked entries, reading what they need
(fstatat, open, flistxattr, read, close per file); `Emitter` puts the runs in the stream in walk
order, deciding hardlinks and streaming large files. In a large tree the runs are written by
worker processes (tree_workers.py), so a tree of small files is not limited to one CPU; the bytes
are the same.

Memory stays bounded whatever the tree's size: large contents stream in pieces, and only one
directory listing per level of depth, the inode map of multiply-linked files and a few runs'
bytes are held.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from layerstore.dir_chain import DIR_FLAGS
from layerstore.tar_format import END_OF_ARCHIVE, HARDLINK, encode_fields
from pybuild.errors import StoreError

if TYPE_CHECKING:
    from layerstore.entry_writer import EntryWriter, Event
    from layerstore.tree_walk import Walked

WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"
OPAQUE_XATTRS = (b"trusted.overlay.opaque", b"user.overlay.opaque")
_BUFFER = 1 << 20

Sink = Callable[[bytes], object]


class WhiteoutNameError(StoreError):
    """A real file whose name starts with `.wh.`: a layer cannot carry it (it means a deletion)."""




def keep_xattr(name: bytes) -> bool:
    """Which extended attributes a layer carries: file capabilities and user attributes, never
    the overlay's bookkeeping (`trusted.overlay.*`, `user.overlay.*`)."""
    if b".overlay." in name or name.startswith(b"trusted.overlay"):
        return False
    return name == b"security.capability" or name.startswith(b"user.")


def clamp_mtime(mtime_ns: int, source_date_epoch: int | None) -> int:
    """Whole seconds, never before the epoch, never after SOURCE_DATE_EPOCH when it is set."""
    seconds = mtime_ns // 1_000_000_000
    if source_date_epoch is not None and seconds > source_date_epoch:
        return source_date_epoch
    return max(seconds, 0)


def layer_order(entries: list[tuple[bool, bytes, int]]) -> list[tuple[bool, bytes, int]]:
    """(not a whiteout, name, kind) triples in layer order: whiteouts first, then bytewise by name
    (layer.md: whiteouts SHOULD precede their siblings). Pure."""
    entries.sort()
    return entries


def xattrs_of(target: int | bytes) -> tuple[tuple[str, bytes], ...]:
    """The kept extended attributes of an open file (descriptor) or, not following a symlink, of a
    path: sorted bytewise by name, names decoded as pax keys are. The standard library's calls, as
    they take a descriptor and cost a third of pyxattr's (one listing per file in a commit)."""
    return xattrs_from(target, _names(target))


def dir_xattrs(dir_fd: int) -> tuple[tuple[tuple[str, bytes], ...], bool]:
    """The kept extended attributes of an open directory, and whether it carries overlayfs's
    opaque marker (trusted or user namespace): one listing for both."""
    names = _names(dir_fd)
    opaque = False
    for name in OPAQUE_XATTRS:
        if name.decode() in names:
            try:
                opaque = opaque or os.getxattr(dir_fd, name) == b"y"
            except OSError:
                continue  # removed meanwhile
    return xattrs_from(dir_fd, names), opaque


def _names(target: int | bytes) -> list[str]:
    try:
        return os.listxattr(target) if isinstance(target, int) else os.listxattr(target, follow_symlinks=False)
    except OSError:
        return []  # no xattr support here: nothing to keep


def xattrs_from(target: int | bytes, names: list[str]) -> tuple[tuple[str, bytes], ...]:
    """`xattrs_of(target)` when its listing, `names`, is known."""
    if not names:
        return ()
    by_fd = isinstance(target, int)
    kept = []
    for raw in sorted(map(os.fsencode, names)):
        if keep_xattr(raw):
            try:
                value = os.getxattr(target, raw) if by_fd else os.getxattr(target, raw, follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            kept.append((raw.decode("utf-8", "surrogateescape"), value))
    return tuple(kept)


class _Chunks:
    """Collects the tar stream into chunks of about _BUFFER bytes for the sink (one sha256/zstd
    call per megabyte, not per 512-byte header); larger pieces pass straight through."""

    __slots__ = ("sink", "parts", "size")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        if len(data) >= _BUFFER:
            self.flush()
            self.sink(data)
            return
        self.parts.append(data)
        self.size += len(data)
        if self.size >= _BUFFER:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.sink(b"".join(self.parts))
            self.parts.clear()
            self.size = 0


class Emitter:
    """Puts written runs (entry_writer.EntryWriter.write_run) into the tar stream, in the order of
    the walk: decides hardlinks (the first path of an inode, in layer order, keeps the contents;
    later ones name it) and streams large files in their place."""

    def __init__(self, writer: EntryWriter, sink: Sink) -> None:
        self.writer = writer
        self.out = _Chunks(sink)
        self.first_path: dict[tuple[int, int], bytes] = {}

    def emit(self, data: bytes, events: list[Event]) -> None:
        out = self.out
        if not events:
            out.add(data)
            return
        pos = 0
        for offset, length, key, what in events:
            if offset > pos:
                out.add(data[pos:offset])
            pos = offset + length
            if key is not None:
                target = self.first_path.get(key)
                if target is not None:
                    rel, mode, uid, gid, _, mtime = what
                    out.add(encode_fields(rel, HARDLINK, mode, uid, gid, 0, mtime, target))
                    continue
                self.first_path[key] = what[0]
            if length:
                out.add(data[offset:pos])
            else:
                self.writer.stream(what, out)
        if pos < len(data):
            out.add(data[pos:])

    def finish(self) -> None:
        self.out.add(END_OF_ARCHIVE)
        self.out.flush()


# A tree with more entries than this is written with worker processes (when there are CPUs for
# them): below it, starting them costs more than they save.
PARALLEL_AFTER = 2000
RUN_ENTRIES = 256  # walked entries written as one run (in this process or by a worker)


def write_tree(
    root: str | os.PathLike[str], sink: Sink, *, source_date_epoch: int | None = None, workers: int | None = None,
) -> int:
    """Write the layer tar of the tree at `root` to `sink` (called with successive `bytes` chunks,
    about a megabyte each, which it may keep) and return the number of entries walked.

    `workers`: None lets a tree of more than PARALLEL_AFTER entries be written by worker processes
    as well (see tree_workers); 0 writes everything in this process; N > 0 starts N workers at once
    (tests use it). The bytes are the same whichever way.

    Raises WhiteoutNameError for a real `.wh.*` file, StoreError if a file shrinks while read or
    the tree is changed under the walk.
    """
    from layerstore.entry_writer import EntryWriter
    from layerstore.tree_walk import tree_entries

    root_b = os.fsencode(root)
    root_fd = os.open(root_b, DIR_FLAGS)
    writer = EntryWriter(root_b, root_fd, source_date_epoch)
    emitter = Emitter(writer, sink)
    pool = None
    try:
        walk = tree_entries(root_b, root_fd)
        held: list[Walked] = []
        if workers is None:
            # walk ahead (cheap: no call per file) to see whether the tree is large; nothing is
            # written yet, so the workers are forked before any thread of ours exists
            for entry in walk:
                held.append(entry)
                if len(held) >= PARALLEL_AFTER:
                    break
            else:
                workers = 0
        if workers != 0:
            from layerstore import tree_workers

            pool = tree_workers.start(writer, workers)
        runs = _runs(itertools.chain(held, walk))
        if pool is not None:
            count = pool.write_all(runs, emitter)
        else:
            count = 0
            for run in runs:
                count += len(run)
                emitter.emit(*writer.write_run(run))
    finally:
        if pool is not None:
            pool.close()
        writer.close()
        os.close(root_fd)
    emitter.finish()
    return count


def _runs(walk: Iterator[Walked]) -> Iterator[list[Walked]]:
    while run := list(itertools.islice(walk, RUN_ENTRIES)):
        yield run
