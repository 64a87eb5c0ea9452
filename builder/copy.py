"""COPY and ADD file semantics: sources from a SourceTree into an image root directory.

The rules are BuildKit's file op (tonistiigi/fsutil `copy.Copy` with `CopyDirContents` and
`FollowSymlinks`, as `dockerfile2llb` asks for them), F66-F74:
- A directory source copies its contents, merged into an existing directory; nested directories
  that already exist take the source's metadata; a file never replaces a directory, nor a
  directory a file (unless `replace_existing`, as `tar -x` does for ADD archives).
- A file source goes inside the destination if that is an existing directory (symlinks in the
  destination followed, inside the root), else it becomes the destination.
- A destination ending in `/` is a directory; missing parents are created 0755, owned by the
  --chown user (else root), timed at SOURCE_DATE_EPOCH when given.
- Top-level source symlinks are followed (the copy keeps the link's name); nested ones are copied
  as links; hard links within one source stay hard links; devices and FIFOs are recreated.
- Ownership: --chown, else what the tree says (0:0 for the build context); mode: --chmod applied
  to every copied file and directory, else the source's; times: SOURCE_DATE_EPOCH, else the
  source's; the extended attributes a layer keeps (`user.*`, `security.capability`) are copied.
- `include` (COPY --parents) and `exclude` (--exclude) patterns are matched against paths
  relative to the source; directories are created lazily, only when something inside is copied.
Nothing outside `dst_root` is ever written: the destination is resolved with `resolve_in_root`,
and below it every existing entry is examined with lstat and never followed.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from builder import gomatch
from builder.chmod import Chmod
from builder.context import Entry, SourceTree
from builder.ignore import PatternMatcher
from builder.users import Identity
from layerstore.layer_tar import xattrs_of
from layerstore.rootpath import resolve_in_root
from pybuild.errors import PybuildError


class CopyError(PybuildError):
    """A copy that cannot be done (a file onto a directory, several files onto one file, ...)."""


@dataclass(frozen=True)
class CopyOptions:
    """How entries are written. `mtime` (seconds) is SOURCE_DATE_EPOCH when set."""

    chown: Identity | None = None
    chmod: Chmod | None = None
    mtime: int | None = None
    exclude: PatternMatcher | None = None
    include: PatternMatcher | None = None
    replace_existing: bool = False


def dest_path(dest: str, workdir: str) -> tuple[str, bool]:
    """The absolute, clean destination and whether it names a directory (trailing `/`, `/.`,
    or `.`/`..`): BuildKit's `pathRelativeToWorkingDir` with the slash kept."""
    joined = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"
    is_dir = dest.endswith("/") or dest.endswith("/.") or dest in (".", "..") or dest.endswith("/..")
    return gomatch.clean(joined), is_dir


def mkdir_all(root: Path, path: str, opts: CopyOptions, created: list[Path] | None = None) -> Path:
    """Create `path` (in-image, absolute) and its missing parents inside `root`, each 0755,
    owned by the --chown user (else root). Symlinks on the way are followed inside the root.
    Returns the host path; CopyError if a component is a file. Created directories are
    appended to `created` (their times are set by `set_times` once they are filled)."""
    parts = [p for p in gomatch.clean("/" + path).split("/") if p]
    current = "/"
    host = Path(root)
    made: list[Path] = []
    for part in parts:
        current = current.rstrip("/") + "/" + part
        host = resolve_in_root(root, current)
        # a symlink on the way may stand for several missing directories
        missing: list[Path] = []
        probe = host
        while True:
            try:
                st = os.stat(probe)
                break
            except FileNotFoundError:
                missing.append(probe)
                probe = probe.parent
            except NotADirectoryError:
                raise CopyError(f"cannot create directory {current}: a file is in the way") from None
        if not stat.S_ISDIR(st.st_mode):
            raise CopyError(f"cannot create directory {current}: a file of that name exists")
        for new in reversed(missing):
            os.mkdir(new, 0o755)
            os.chmod(new, 0o755)
            owner = opts.chown or Identity(0, 0)
            os.lchown(new, owner.uid, owner.gid)
            made.append(new)
    if created is None:
        set_times(made, opts)
    else:
        created.extend(made)
    return host


def set_times(dirs: list[Path], opts: CopyOptions) -> None:
    """Give created directories SOURCE_DATE_EPOCH as their times, innermost first (setting a
    directory's times does not touch its parent's). Without an epoch they keep the present."""
    if opts.mtime is None:
        return
    for d in reversed(dirs):
        os.utime(d, (opts.mtime, opts.mtime), follow_symlinks=False)


def copy_entry(tree: SourceTree, src: Entry, name: str, dst_root: Path, dest: str, dest_is_dir: bool, opts: CopyOptions) -> None:
    """Copy one resolved source (`src`, top-level symlinks already followed; `name` the name
    it was given by) to `dest` in the image, as one source of a COPY/ADD."""
    created: list[Path] = []
    if dest_is_dir:
        mkdir_all(dst_root, dest, opts, created)
    else:
        mkdir_all(dst_root, os.path.dirname(dest) or "/", opts, created)
    target = resolve_in_root(dst_root, dest)
    try:
        dst_st: os.stat_result | None = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        dst_st = None
    if not src.is_dir and dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
        target = target / os.path.basename(name)
    elif src.is_dir and dst_st is None:
        mkdir_all(dst_root, _in_image(dst_root, target), opts, created)
    _Copier(tree, opts).copy_top(src, target)
    set_times(created, opts)


def merge_tree(tree: SourceTree, target: Path, opts: CopyOptions) -> None:
    """Merge all of `tree` into the existing directory `target` (its own metadata untouched)."""
    _Copier(tree, opts).copy_top(tree.entry("/"), target)


def _in_image(root: Path, host: Path) -> str:
    rel = os.path.relpath(host, root)
    return "/" if rel == "." else "/" + rel


@dataclass
class _Pending:
    comp: str
    src: Entry
    dst: Path
    done: bool = False


@dataclass
class _Copier:
    tree: SourceTree
    opts: CopyOptions
    inodes: dict[tuple[int, int], Path] = field(default_factory=dict)
    # Directories whose times are set once everything inside them is written, in creation order.
    dir_times: list[tuple[Entry, Path]] = field(default_factory=list)

    def copy_top(self, src: Entry, dst: Path) -> None:
        if not src.is_dir:
            self._copy_leaf(src, dst)
            return
        self._make_dir(src, dst, overwrite=False)
        self._copy_children(src, dst)
        for entry, path in reversed(self.dir_times):
            self._times(entry, path)

    def _copy_children(self, src: Entry, dst: Path) -> None:
        # Directories not selected themselves wait here until something inside them is copied.
        pending: list[_Pending] = []
        for sel in self.tree.select(src, include=self.opts.include, exclude=self.opts.exclude):
            while pending and not sel.comp.startswith(pending[-1].comp + "/"):
                pending.pop()
            target = dst / sel.comp
            if sel.entry.is_dir:
                node = _Pending(sel.comp, sel.entry, target)
                if sel.included:
                    self._create(pending)
                    self._make_dir(sel.entry, target, overwrite=True)
                    node.done = True
                pending.append(node)
            else:
                self._create(pending)
                self._copy_leaf(sel.entry, target)

    def _create(self, pending: list[_Pending]) -> None:
        for node in pending:
            if not node.done:
                self._make_dir(node.src, node.dst, overwrite=True)
                node.done = True

    def _make_dir(self, src: Entry, dst: Path, *, overwrite: bool) -> None:
        """Create `dst` like `src`, or merge into an existing directory there (taking the
        source's metadata unless it is the top of the copy)."""
        try:
            st = os.lstat(dst)
        except FileNotFoundError:
            os.mkdir(dst, 0o700)
            self._metadata(src, dst)
            return
        if not stat.S_ISDIR(st.st_mode):
            if not self.opts.replace_existing:
                raise CopyError(f"cannot copy directory {src.rel or '.'} to non-directory {dst.name}")
            os.unlink(dst)
            os.mkdir(dst, 0o700)
            self._metadata(src, dst)
        elif overwrite:
            self._metadata(src, dst)

    def _copy_leaf(self, src: Entry, dst: Path) -> None:
        """Replace whatever non-directory is at `dst` with a copy of `src` (never following a
        symlink at `dst`)."""
        try:
            st = os.lstat(dst)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode):
                if not self.opts.replace_existing:
                    raise CopyError(f"cannot replace directory {dst.name} with file {src.rel}")
                _remove_tree(dst)
            else:
                os.unlink(dst)
        mode = src.st.st_mode
        host_src = self.tree.host(src.rel)
        if stat.S_ISREG(mode):
            key = (src.st.st_dev, src.st.st_ino)
            first = self.inodes.get(key) if src.st.st_nlink > 1 else None
            if first is not None:
                os.link(first, dst, follow_symlinks=False)
                return
            _copy_file(host_src, dst)
            if src.st.st_nlink > 1:
                self.inodes[key] = dst
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(host_src), dst)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(dst, stat.S_IFMT(mode) | 0o600, src.st.st_rdev)
        else:
            return  # sockets cannot be copied (and cannot be in a layer)
        self._metadata(src, dst)

    def _metadata(self, src: Entry, dst: Path) -> None:
        """Owner, then mode (chown clears setuid), extended attributes, times."""
        st = src.st
        owner = self.opts.chown
        uid, gid = (owner.uid, owner.gid) if owner else self.tree.owner(st)
        os.lchown(dst, uid, gid)
        is_link = stat.S_ISLNK(st.st_mode)
        if not is_link:
            is_dir = stat.S_ISDIR(st.st_mode)
            chmod = self.opts.chmod
            os.chmod(dst, chmod.apply(st.st_mode, is_dir=is_dir) if chmod else stat.S_IMODE(st.st_mode))
        _copy_xattrs(self.tree.host(src.rel), dst)
        if stat.S_ISDIR(st.st_mode):
            self.dir_times.append((src, dst))
        else:
            self._times(src, dst)

    def _times(self, src: Entry, dst: Path) -> None:
        if self.opts.mtime is not None:
            ns = self.opts.mtime * 1_000_000_000
            os.utime(dst, ns=(ns, ns), follow_symlinks=False)
        else:
            os.utime(dst, ns=(src.st.st_atime_ns, src.st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src: Path, dst: Path) -> None:
    """Copy the bytes of a regular file into a new file (kernel-side copy where possible)."""
    with open(src, "rb") as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fin.fileno()).st_size
            copied = 0
            use_range = True
            while copied < size:
                try:
                    if use_range:
                        n = os.copy_file_range(fin.fileno(), fd, size - copied)
                    else:
                        n = os.sendfile(fd, fin.fileno(), None, size - copied)
                except OSError as e:
                    if use_range and e.errno in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        use_range = False
                        continue
                    raise
                if n == 0:
                    break  # the source shrank meanwhile
                copied += n
        finally:
            os.close(fd)


def _copy_xattrs(src: Path, dst: Path) -> None:
    """The extended attributes a layer keeps (`layerstore.layer_tar.keep_xattr`): COPY carries
    exactly those, never the overlay's own."""
    for name, value in xattrs_of(os.fsencode(src)):
        try:
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError:
            continue  # as BuildKit: an attribute the target cannot hold is not an error


def _remove_tree(path: Path) -> None:
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            _remove_tree(Path(entry.path))
        else:
            os.unlink(entry.path)
    os.rmdir(path)
