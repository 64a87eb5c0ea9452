"""Layer tar -> directory: our own extractor, safe against hostile archives.

Never `tarfile.extractall` (its `data` filter has been escaped; ../shared/reference/peer-tools.md).
Rules (DESIGN.md section 3), each a refusal with one error line naming the entry:
- no absolute names, no `..` component, no NUL, no empty names;
- every parent directory is opened with O_NOFOLLOW relative to its own parent's descriptor, so
  nothing is ever written through a symlink, whatever the archive did before;
- hardlink targets obey the same rules and must already exist in this layer (and not be directories);
- a path may not change between directory and non-directory within one layer;
- `.wh.NAME` becomes an overlay whiteout (character device 0/0) named NAME, which must be a plain
  name (`.wh..`, `.wh.` are refused); `.wh..wh..opq` marks its directory opaque;
- only `security.capability` and `user.*` extended attributes are applied;
- directory modes, owners and times are applied last, deepest first.

Device nodes are legitimate in a layer (a root file system has /dev/null). As root they are created
with mknod, always inside the target (the rules above); unprivileged, mknod is not allowed, so they
are skipped and counted in `Extracted.skipped_devices` (rootless Podman does the same). Whiteouts
cannot be skipped without changing the layer's meaning, so unprivileged extraction of a layer with
whiteouts is refused.

The caller extracts into a new empty directory and publishes it (rename) only after the digests are
checked; a refusal leaves just that temp directory for the caller to remove.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import xattr

from layerstore.dir_chain import DIR_FLAGS, DirChain, walk_dirs
from layerstore.layer_tar import OPAQUE_MARKER, WHITEOUT_PREFIX, keep_xattr
from layerstore.lazylog import Logger
from layerstore.tar_format import (
    BLOCKDEV,
    CHAR,
    DIRECTORY,
    FIFO,
    HARDLINK,
    REGULAR,
    SYMLINK,
    TarEntry,
    TarReader,
    show_name,
)
from pybuild.errors import StoreError

log = Logger(__name__)

_AUFS_META = b".wh..wh."  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): ignored, as Docker does
OPAQUE_XATTR = "trusted.overlay.opaque"


class UnsafeLayer(StoreError):
    """A layer archive entry that would write outside its directory or break a layer rule."""


@dataclass
class Extracted:
    """What an extraction did."""

    entries: int = 0
    skipped_devices: int = 0
    skipped_xattrs: int = 0
    dirs: list[tuple[tuple[bytes, ...], TarEntry]] = field(default_factory=list, repr=False)


def split_name(name: bytes) -> tuple[bytes, ...]:
    """The components of an archive name, or UnsafeLayer if it could leave the target."""
    if not name:
        raise UnsafeLayer("empty entry name")
    if b"\0" in name:
        raise UnsafeLayer(f"{show_name(name)}: NUL in entry name")
    if name[:1] == b"/":
        raise UnsafeLayer(f"{show_name(name)}: absolute path in layer")
    parts = name.split(b"/")
    if b"" in parts or b"." in parts:
        parts = [p for p in parts if p not in (b"", b".")]
    if b".." in parts:
        raise UnsafeLayer(f"{show_name(name)}: '..' in path would leave the layer")
    return tuple(parts)


def open_dir(parent: int, name: bytes, what: bytes, create: bool) -> int:
    """Open directory `name` in `parent` without following a symlink; create it (0755) if absent
    and `create`. `what` (the entry being extracted) names errors. A `dir_chain.Opener`."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise not_in_layer(what, name) from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise not_a_directory(what, name) from None
        raise
    os.mkdir(name, 0o700, dir_fd=parent)
    fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    os.fchmod(fd, 0o755)
    return fd


class _Context:
    """What one extraction knows about its process: privileged or not, and the umask."""

    def __init__(self, privileged: bool) -> None:
        self.privileged = privileged
        self.umask = _umask()

    def creates_with_mode(self, mode: int) -> bool:
        """Whether a file created with `mode & 0o777` gets exactly `mode`: no setuid, setgid or
        sticky bit (chown would clear the first two), and nothing the umask takes away. Then no
        fchmod is needed."""
        return not (mode & 0o7000 or mode & 0o777 & self.umask)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask sets it, which other threads would
    see); 0o777 (so every file gets its fchmod) where /proc does not say."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777


def extract(reader: TarReader, target: Path, *, privileged: bool | None = None) -> Extracted:
    """Extract every entry of `reader` into `target`, an existing empty directory.

    `privileged` (default: running as root) decides ownership, device nodes and whiteouts.
    Raises UnsafeLayer (or another StoreError) on the first entry that breaks a rule.
    """
    ctx = _Context(os.geteuid() == 0 if privileged is None else privileged)
    root_fd = os.open(target, DIR_FLAGS)
    dirs = DirChain(root_fd, open_dir)
    done = Extracted()
    try:
        for entry in reader:
            done.entries += 1
            try:
                _extract_one(entry, reader, dirs, done, ctx)
            except OSError as e:
                raise StoreError(f"{show_name(entry.name)}: cannot extract: {e.strerror}") from None
        dirs.close()
        for parts, entry in sorted(done.dirs, key=lambda d: -len(d[0])):
            fd = os.dup(root_fd) if not parts else dirs.open(parts, what=entry.name)
            try:
                _apply_metadata(fd, entry, ctx, done)
            finally:
                if not parts:
                    os.close(fd)
        dirs.close()
    finally:
        dirs.close()
        os.close(root_fd)
    return done


def entry_parts(entry: TarEntry) -> tuple[bytes, ...] | None:
    """The components of `entry`'s name once it passes the rules that need nothing but the entry
    (`split_name`'s, the root, whiteout names, link targets); None for aufs bookkeeping, which is
    skipped. The rules that depend on what came before are the extractor's (the kernel's, through
    O_NOFOLLOW) and `layer_check.LayerCheck`'s (an in-memory tree)."""
    name = entry.name
    parts = split_name(name)
    if _AUFS_META in name and any(p.startswith(_AUFS_META) and p != OPAQUE_MARKER for p in parts):
        log.debug("skipping aufs metadata %s", show_name(name))
        return None
    if not parts:
        if entry.type != DIRECTORY:
            raise UnsafeLayer(f"{show_name(name)}: the layer root must be a directory")
        return parts
    parent, base = parts[:-1], parts[-1]
    if WHITEOUT_PREFIX in name:
        if any(p.startswith(WHITEOUT_PREFIX) for p in parent):
            raise UnsafeLayer(f"{show_name(name)}: a whiteout name cannot be a directory")
        if entry.type == HARDLINK and base.startswith(WHITEOUT_PREFIX):
            raise UnsafeLayer(f"{show_name(name)}: a whiteout cannot be a hardlink")
        hidden = base[len(WHITEOUT_PREFIX):]
        if base.startswith(WHITEOUT_PREFIX) and base != OPAQUE_MARKER and (
            hidden in (b"", b".", b"..") or hidden.startswith(WHITEOUT_PREFIX)
        ):
            raise UnsafeLayer(f"{show_name(name)}: whiteout of {show_name(hidden) or 'nothing'!r} is not a plain name")
    if entry.type == SYMLINK and (not entry.linkname or b"\0" in entry.linkname):
        raise UnsafeLayer(f"{show_name(name)}: symlink with an empty or NUL target")
    if entry.type == HARDLINK and not split_name(entry.linkname):
        raise UnsafeLayer(f"{show_name(name)}: hardlink to the layer root")
    return parts


def not_a_directory(what: bytes, name: bytes) -> UnsafeLayer:
    return UnsafeLayer(f"{show_name(what)}: path goes through {show_name(name)}, which is not a directory (a symlink?)")


def not_in_layer(what: bytes, name: bytes) -> UnsafeLayer:
    return UnsafeLayer(f"{show_name(what)}: {show_name(name)} does not exist in the layer")


def replaces(what: bytes, directory: bool) -> UnsafeLayer:
    return UnsafeLayer(f"{show_name(what)}: entry replaces a {'directory' if directory else 'file'} of the same name")


def hardlink_target_missing(entry: TarEntry) -> UnsafeLayer:
    return UnsafeLayer(f"{show_name(entry.name)}: hardlink to {show_name(entry.linkname)}, which is not in the layer")


def hardlink_to_directory(entry: TarEntry) -> UnsafeLayer:
    return UnsafeLayer(f"{show_name(entry.name)}: hardlink to a directory")


def _extract_one(entry: TarEntry, reader: TarReader, dirs: DirChain, done: Extracted, ctx: _Context) -> None:
    name = entry.name
    parts = entry_parts(entry)
    if parts is None:
        return
    if not parts:
        done.dirs.append(((), entry))
        return
    parent, base = parts[:-1], parts[-1]
    dir_fd = dirs.open(parent, create=True, what=name)
    if base.startswith(WHITEOUT_PREFIX):
        _whiteout(dir_fd, base, name, ctx.privileged)
        return
    kind = entry.type
    if kind == REGULAR:
        fd = _create(dir_fd, base, entry, ctx)
        try:
            _preallocate(fd, entry.size)
            for chunk in reader.data():
                _write_all(fd, chunk)
            _apply_metadata(fd, entry, ctx, done, mode_set=ctx.creates_with_mode(entry.mode))
        finally:
            os.close(fd)
    elif kind == DIRECTORY:
        try:
            os.mkdir(base, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            _make_room(dir_fd, base, DIRECTORY, name)  # a directory seen before is fine: metadata is applied last
        done.dirs.append((parts, entry))
    elif kind == SYMLINK:
        _make_room(dir_fd, base, kind, name)
        os.symlink(entry.linkname, base, dir_fd=dir_fd)
        if ctx.privileged:
            os.chown(base, entry.uid, entry.gid, dir_fd=dir_fd, follow_symlinks=False)
        _utime(base, dir_fd, entry.mtime)
    elif kind == HARDLINK:
        _make_room(dir_fd, base, kind, name)
        _hardlink(entry, dirs, dir_fd, base)
    elif kind in (CHAR, BLOCKDEV, FIFO):
        if kind != FIFO and not ctx.privileged:
            done.skipped_devices += 1
            log.info("%s: device node skipped (unprivileged)", show_name(name))
            return
        _make_room(dir_fd, base, kind, name)
        node = {CHAR: stat.S_IFCHR, BLOCKDEV: stat.S_IFBLK, FIFO: stat.S_IFIFO}[kind]
        os.mknod(base, node | 0o600, os.makedev(entry.devmajor, entry.devminor), dir_fd=dir_fd)
        if ctx.privileged:
            os.chown(base, entry.uid, entry.gid, dir_fd=dir_fd, follow_symlinks=False)
        os.chmod(base, stat.S_IMODE(entry.mode), dir_fd=dir_fd)  # ours, just made: not a symlink
        _set_xattrs(f"/proc/self/fd/{dir_fd}/{os.fsdecode(base)}", entry, done)
        _utime(base, dir_fd, entry.mtime)


def _whiteout(dir_fd: int, base: bytes, name: bytes, privileged: bool) -> None:
    """`.wh..wh..opq` marks its directory opaque; `.wh.NAME` becomes the whiteout NAME."""
    if base == OPAQUE_MARKER:
        if not privileged:
            raise UnsafeLayer(f"{show_name(name)}: opaque directories need root to unpack")
        xattr.set(dir_fd, OPAQUE_XATTR, b"y")
        return
    hidden = base[len(WHITEOUT_PREFIX):]  # a plain name (entry_parts)
    if not privileged:
        raise UnsafeLayer(f"{show_name(name)}: overlay whiteouts need root to unpack")
    _make_room(dir_fd, hidden, CHAR, name)
    os.mknod(hidden, stat.S_IFCHR | 0o000, 0, dir_fd=dir_fd)


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create(dir_fd: int, base: bytes, entry: TarEntry, ctx: _Context) -> int:
    """A new regular file `base` for `entry` (an earlier non-directory of that name is replaced:
    tar semantics), created with the entry's permissions where the umask keeps them."""
    mode = entry.mode & 0o777 if ctx.creates_with_mode(entry.mode) else 0o600
    try:
        return os.open(base, _CREATE_FLAGS, mode, dir_fd=dir_fd)
    except FileExistsError:
        _make_room(dir_fd, base, REGULAR, entry.name)
    return os.open(base, _CREATE_FLAGS, mode, dir_fd=dir_fd)


def _make_room(dir_fd: int, base: bytes, new_type: bytes, what: bytes) -> None:
    """Allow a later entry to replace an earlier non-directory of the same name (tar semantics);
    refuse a change between directory and non-directory."""
    try:
        st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode) or new_type == DIRECTORY:
        if stat.S_ISDIR(st.st_mode) and new_type == DIRECTORY:
            return
        raise replaces(what, stat.S_ISDIR(st.st_mode))
    os.unlink(base, dir_fd=dir_fd)


def _hardlink(entry: TarEntry, dirs: DirChain, dir_fd: int, base: bytes) -> None:
    *tparent, tbase = split_name(entry.linkname)  # not the root (entry_parts)
    # A separate walk: the target's parents must be real directories of this layer too.
    parent_fd = walk_dirs(dirs.root_fd, tuple(tparent), open_dir, what=entry.name)
    try:
        try:
            st = os.stat(tbase, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise hardlink_target_missing(entry) from None
        if stat.S_ISDIR(st.st_mode):
            raise hardlink_to_directory(entry)
        os.link(tbase, base, src_dir_fd=parent_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(parent_fd)


_PREALLOCATE_FROM = 256 * 1024


def _preallocate(fd: int, size: int) -> None:
    """Reserve a large file's blocks in one call (ext4 then allocates once instead of on every
    write: about 40% less CPU writing 500 MB). A short tar stream fails the whole extraction, so
    a file never keeps the zeros of a reservation its data did not fill."""
    if size >= _PREALLOCATE_FROM:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:
            pass  # not supported here (or no room: the writes will say so)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _utime(base: bytes, dir_fd: int, mtime: int) -> None:
    ns = mtime * 1_000_000_000
    os.utime(base, ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)


def _apply_metadata(fd: int, entry: TarEntry, ctx: _Context, done: Extracted, *, mode_set: bool = False) -> None:
    """Owner, then mode (chown clears setuid bits), xattrs, times: on an open file or directory.
    `mode_set`: the file was created with its mode already (see `_Context.creates_with_mode`)."""
    if ctx.privileged:
        os.fchown(fd, entry.uid, entry.gid)
    if not mode_set:
        os.fchmod(fd, stat.S_IMODE(entry.mode))
    if entry.xattrs:
        _set_xattrs(fd, entry, done)
    ns = entry.mtime * 1_000_000_000
    os.utime(fd, ns=(ns, ns))


def _set_xattrs(target: int | str, entry: TarEntry, done: Extracted) -> None:
    for key, value in _kept(entry.xattrs):
        try:
            xattr.set(target, key, value)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                raise
            done.skipped_xattrs += 1
            log.info("%s: extended attribute %s not applied: %s", show_name(entry.name), key, e.strerror)


def _kept(pairs: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in pairs if keep_xattr(k.encode("utf-8", "surrogateescape"))]
