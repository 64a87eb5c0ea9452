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

The tree is read through directory descriptors opened without following symlinks (a directory
swapped for a symlink while we read cannot lead outside the tree), and a file's attributes through
the descriptor its contents are read from: per regular file one fstatat, open, flistxattr, read and
close. A tree of small files costs what these calls cost plus one header each, so the per-entry
work below is written for speed (tar_format.encode_fields, no per-entry objects).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from layerstore.tar_format import (
    BLOCK,
    BLOCKDEV,
    CHAR,
    DIRECTORY,
    END_OF_ARCHIVE,
    FIFO,
    HARDLINK,
    REGULAR,
    SYMLINK,
    encode_fields,
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


Listing = list[tuple[bool, bytes, os.stat_result]]


def layer_order(entries: Listing) -> Listing:
    """(not a whiteout, name, lstat) triples in layer order: whiteouts first, then bytewise by name
    (layer.md: whiteouts SHOULD precede their siblings). Names in a directory are unique, so the
    stat results are never compared."""
    entries.sort()
    return entries


def listing(dir_fd: int) -> Listing:
    """The entries of the open directory `dir_fd` in layer order (see `layer_order`)."""
    entries = []
    fsencode = os.fsencode
    with os.scandir(dir_fd) as it:
        for d in it:
            st = d.stat(follow_symlinks=False)  # fstatat on dir_fd, no symlink followed
            # the kernel shares one whiteout inode: tell whiteouts apart before hardlinks
            whiteout = st.st_rdev == 0 and stat.S_ISCHR(st.st_mode)
            entries.append((not whiteout, fsencode(d.name), st))
    return layer_order(entries)


def xattrs_of(target: int | bytes) -> tuple[tuple[str, bytes], ...]:
    """The kept extended attributes of an open file (descriptor) or, not following a symlink, of a
    path: sorted bytewise by name, names decoded as pax keys are. The standard library's calls, as
    they take a descriptor and cost a third of pyxattr's (one listing per file in a commit)."""
    by_fd = isinstance(target, int)
    try:
        names = os.listxattr(target) if by_fd else os.listxattr(target, follow_symlinks=False)
    except OSError:
        return ()  # no xattr support here: nothing to keep
    if not names:
        return ()
    kept = []
    for raw in sorted(map(os.fsencode, names)):
        if keep_xattr(raw):
            try:
                value = os.getxattr(target, raw) if by_fd else os.getxattr(target, raw, follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            kept.append((raw.decode("utf-8", "surrogateescape"), value))
    return tuple(kept)


def is_opaque(dir_fd: int) -> bool:
    """Whether the open directory carries overlayfs's opaque marker (trusted or user namespace)."""
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(dir_fd, name) == b"y":
                return True
        except OSError:
            continue
    return False


# stat's S_IF* as plain globals: the walk tests every entry's type
_S_IFMT, _S_IFREG, _S_IFDIR, _S_IFLNK, _S_IFSOCK = 0o170000, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFSOCK
_KINDS = {stat.S_IFREG: REGULAR, stat.S_IFDIR: DIRECTORY, stat.S_IFLNK: SYMLINK, stat.S_IFCHR: CHAR,
          stat.S_IFBLK: BLOCKDEV, stat.S_IFIFO: FIFO}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a file swapped for a FIFO after its stat must not hang the commit
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_PADDING = [b"\0" * (-n % BLOCK) for n in range(BLOCK)]
KEEP_OPEN = 128  # directory descriptors held along the current path; shallower ones are reopened


class _Level:
    """One directory on the current path: its name in its parent, its entries' name prefix, its
    descriptor (-1 while closed to save descriptors), identity, and the entries still to write."""

    __slots__ = ("name", "prefix", "fd", "ident", "entries")

    def __init__(self, name: bytes, prefix: bytes, fd: int, ident: tuple[int, int], entries: Listing) -> None:
        self.name = name
        self.prefix = prefix
        self.fd = fd
        self.ident = ident
        self.entries = iter(entries)


class _Chunks:
    """Collects the tar stream into chunks of about _BUFFER bytes for the sink (one sha256/zstd
    call per megabyte, not per 512-byte header); large contents pass straight through."""

    __slots__ = ("sink", "parts", "size")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, *data: bytes) -> None:
        self.parts.extend(data)
        self.size += sum(map(len, data))
        if self.size >= _BUFFER:
            self.flush()

    def direct(self, data: bytes) -> None:
        self.flush()
        self.sink(data)

    def flush(self) -> None:
        if self.parts:
            self.sink(b"".join(self.parts))
            self.parts.clear()
            self.size = 0


def write_tree(root: str | os.PathLike[str], sink: Sink, *, source_date_epoch: int | None = None) -> int:
    """Write the layer tar of the tree at `root` to `sink` (called with successive `bytes` chunks of
    up to about a megabyte, which it may keep) and return the number of entries.

    Raises WhiteoutNameError for a real `.wh.*` file, StoreError if a file shrinks while read or
    the tree is moved about under the walk.
    """
    root_b = os.fsencode(root)
    root_fd = os.open(root_b, _DIR_FLAGS)
    try:
        st = os.fstat(root_fd)
        writer = _TreeWriter(root_b, sink, source_date_epoch)
        writer.walk(_Level(b"", b"", root_fd, (st.st_dev, st.st_ino), listing(root_fd)))
    finally:
        os.close(root_fd)
    out = writer.out
    out.add(END_OF_ARCHIVE)
    out.flush()
    return writer.count


class _TreeWriter:
    """The walk of one `write_tree`: depth first, a directory's entry before its contents."""

    def __init__(self, root: bytes, sink: Sink, source_date_epoch: int | None) -> None:
        self.root = root
        self.out = _Chunks(sink)
        self.epoch = source_date_epoch
        self.first_path: dict[tuple[int, int], bytes] = {}
        self.count = 0

    def walk(self, top: _Level) -> None:
        """Write `top`'s tree (its own descriptor stays the caller's to close)."""
        stack = [top]
        try:
            while stack:
                level = stack[-1]
                child = self._write_entries(level)
                if child is not None:
                    stack.append(child)
                    if len(stack) > KEEP_OPEN + 1:
                        far = stack[-KEEP_OPEN - 2]
                        if far.fd != -1 and far is not top:
                            os.close(far.fd)
                            far.fd = -1
                    continue
                stack.pop()
                if level is not top:
                    if stack[-1].fd == -1:
                        stack[-1].fd = self._reopen_parent(level, stack[-1])
                    os.close(level.fd)
                    level.fd = -1
        finally:
            for level in stack:
                if level is not top and level.fd != -1:
                    os.close(level.fd)

    def _write_entries(self, level: _Level) -> _Level | None:
        """Write `level`'s entries up to and including its next subdirectory, which is returned
        (opened and listed) to be walked next; None when the directory is done."""
        dir_fd, prefix, out, epoch, first_path = level.fd, level.prefix, self.out, self.epoch, self.first_path
        parts = out.parts
        for not_whiteout, name, st in level.entries:
            rel = prefix + name
            mode = st.st_mode
            if not not_whiteout:
                self.count += 1
                out.add(encode_fields(prefix + WHITEOUT_PREFIX + name, REGULAR, 0))
                continue
            if name.startswith(WHITEOUT_PREFIX):
                raise WhiteoutNameError(
                    f"{show_name(os.path.join(self.root, rel))}: a file named '.wh.*' cannot be stored in a layer "
                    "(the name means a deletion)",
                    hint="rename or remove it before committing",
                )
            fmt = mode & _S_IFMT
            if fmt == _S_IFSOCK:
                continue
            self.count += 1
            mtime = clamp_mtime(st.st_mtime_ns, epoch)
            if fmt != _S_IFDIR and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                target = first_path.get(key)
                if target is not None:
                    out.add(encode_fields(rel, HARDLINK, mode, st.st_uid, st.st_gid, 0, mtime, target))
                    continue
                first_path[key] = rel
            if fmt == _S_IFREG:
                self._write_file(dir_fd, name, rel, st, mtime)
                if out.size >= _BUFFER:
                    out.flush()
                    parts = out.parts
            elif fmt == _S_IFDIR:
                fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    parts.append(encode_fields(rel, DIRECTORY, mode, st.st_uid, st.st_gid, 0, mtime, b"", 0, 0, xattrs_of(fd)))
                    if is_opaque(fd):
                        # layer.md: the opaque marker follows its directory's own entry
                        self.count += 1
                        parts.append(encode_fields(rel + b"/" + OPAQUE_MARKER, REGULAR, 0, st.st_uid, st.st_gid))
                    out.size += BLOCK  # close enough for deciding when to flush
                    return _Level(name, rel + b"/", fd, (st.st_dev, st.st_ino), listing(fd))
                except BaseException:
                    os.close(fd)
                    raise
            elif fmt == _S_IFLNK:
                out.add(encode_fields(rel, SYMLINK, mode, st.st_uid, st.st_gid, 0, mtime, os.readlink(name, dir_fd=dir_fd)))
            else:
                rdev = st.st_rdev if fmt != stat.S_IFIFO else 0
                out.add(encode_fields(
                    rel, _KINDS[fmt], mode, st.st_uid, st.st_gid, 0, mtime, b"", os.major(rdev), os.minor(rdev),
                    xattrs_of(os.path.join(self.root, rel)),
                ))
        return None

    def _write_file(self, dir_fd: int, name: bytes, rel: bytes, st: os.stat_result, mtime: int) -> None:
        """Header, contents and padding of a regular file: small files in one read, larger ones
        in READ_SIZE reads passed straight to the sink."""
        size = st.st_size
        out = self.out
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        try:
            header = encode_fields(rel, REGULAR, st.st_mode, st.st_uid, st.st_gid, size, mtime, b"", 0, 0, xattrs_of(fd))
            if size < _BUFFER:
                data = os.read(fd, size) if size else b""
                while len(data) < size:
                    more = os.read(fd, size - len(data))
                    if not more:
                        raise self._shrank(rel)
                    data += more
                out.parts += (header, data, _PADDING[size % BLOCK])
                out.size += len(header) + size
                return
            out.parts.append(header)
            left = size
            lend = getattr(out.sink, "lend", None)
            while left:
                if lend is not None:
                    buf = lend()
                    n = os.readv(fd, [memoryview(buf)[: min(left, len(buf))]])
                    if n:
                        out.flush()
                        out.sink.take(buf, n)  # type: ignore[attr-defined]
                else:
                    # a fresh bytes object per read: the sink may hand it to another thread without copying
                    data = os.read(fd, min(left, READ_SIZE))
                    n = len(data)
                    if n >= _BUFFER:
                        out.direct(data)
                    elif n:
                        out.add(data)
                if not n:
                    raise self._shrank(rel)
                left -= n
            out.add(_PADDING[size % BLOCK])
        finally:
            os.close(fd)

    def _shrank(self, rel: bytes) -> StoreError:
        return StoreError(f"{show_name(os.path.join(self.root, rel))}: file shrank while it was being read")

    def _reopen_parent(self, child: _Level, parent: _Level) -> int:
        """`parent`'s descriptor, closed to save descriptors, again: `..` of its open child, checked
        to be the same directory (a tree moved about under the walk is an error, not a way out)."""
        fd = os.open(b"..", _DIR_FLAGS, dir_fd=child.fd)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != parent.ident:
            os.close(fd)
            raise StoreError(f"{show_name(os.path.join(self.root, parent.prefix))}: directory moved while it was being committed")
        return fd
