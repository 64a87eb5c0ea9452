"""Overlay root file systems and the mount primitives the sandbox builds on.

`mount_overlay` mounts `overlay(lowers, upper, work)` with the options DESIGN §3 fixes
(`index=off,redirect_dir=off,metacopy=off`: the upper dir must be a plain directory tree that
the layer store can read as a diff). The option string of mount(2) must fit one page; a long
list of lower dirs is mounted through short relative symlinks with the working directory set to
where they are, in a short-lived child process so the caller's working directory never changes.

`overlay_rootfs` is the builder's way to write into a merged view from outside a container
(COPY, ADD, WORKDIR): it mounts in the caller's mount namespace and always unmounts.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pybuild.errors import RuntimeError_
from runner import namespaces as ns

OVERLAY_FIXED_OPTIONS = "index=off,redirect_dir=off,metacopy=off"
# mount(2) copies at most one page of options, NUL included.
MAX_OPTIONS = 4000
_UNSAFE = (",", ":", "\\")


def overlay_options(lowers: Sequence[str], upper: str | None, work: str | None) -> str:
    """The option string for overlayfs. Pure."""
    opts = ["lowerdir=" + ":".join(lowers)]
    if upper is not None:
        opts += [f"upperdir={upper}", f"workdir={work}"]
    return ",".join(opts + [OVERLAY_FIXED_OPTIONS])


def mount_overlay(target: Path, lowers: Sequence[Path], upper: Path | None, work: Path | None) -> None:
    """Mount the overlay of `lowers` (top first) with `upper`/`work` at `target`.

    Without an upper the mount is read-only (overlayfs needs two lowers or more then). Raises
    RuntimeError_ naming the target on failure.
    """
    if not lowers:
        raise RuntimeError_(f"overlay at {target}: no lower directories")
    lower_strs = [os.fspath(p) for p in lowers]
    upper_s = os.fspath(upper) if upper is not None else None
    work_s = os.fspath(work) if work is not None else None
    flags = ns.MS_RDONLY if upper is None else 0
    options = overlay_options(lower_strs, upper_s, work_s)
    every = lower_strs + [s for s in (upper_s, work_s) if s]
    try:
        if len(options) < MAX_OPTIONS and not any(c in s for s in every for c in _UNSAFE):
            ns.mount("overlay", target, "overlay", flags, options)
        else:
            _mount_overlay_via_links(target, lower_strs, upper_s, work_s, flags)
    except OSError as e:
        raise RuntimeError_(f"cannot mount the overlay root at {target}: {e.strerror}") from e


def _mount_overlay_via_links(target: Path, lowers: list[str], upper: str | None, work: str | None, flags: int) -> None:
    links = make_temp_dir(Path(os.path.dirname(os.fspath(target))), "ovl.")
    try:
        names = []
        for i, lower in enumerate(lowers):
            name = format(i, "x")
            os.symlink(lower, links / name)
            names.append(name)
        if upper is not None and work is not None:
            os.symlink(upper, links / "u")
            os.symlink(work, links / "w")
        options = overlay_options(names, "u" if upper else None, "w" if upper else None)
        if len(options) >= MAX_OPTIONS:
            raise OSError(errno.E2BIG, f"{len(lowers)} lower directories are too many for one overlay")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                os.chdir(links)
                ns.mount("overlay", os.path.abspath(target), "overlay", flags, options)
            except OSError as e:
                code = e.errno or 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise OSError(code, os.strerror(code) if code > 0 else "killed")
    finally:
        remove_tree(links)


def unmount(target: Path | str, *, timeout: float = 5.0) -> None:
    """Unmount `target`, retrying while busy, then detaching lazily. Idempotent: a path that is
    not a mount point (or does not exist) is left alone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ns.umount2(target, 0)
            return
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return  # not mounted
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                try:
                    ns.umount2(target, ns.MNT_DETACH)
                    return
                except OSError:
                    raise RuntimeError_(f"cannot unmount {target}: {e.strerror}") from e
            time.sleep(0.01)


@contextmanager
def overlay_rootfs(lowers: Sequence[Path], upper: Path, work: Path | None = None) -> Iterator[Path]:
    """Mount overlay(lowers top first, upper) and yield the merged directory; always unmount.

    For writing into an image's file system from outside a container (COPY, ADD, WORKDIR). The
    mount is in the caller's mount namespace; the merged dir and (unless given) the work dir are
    temporary directories beside `upper` and are removed afterwards, so `upper` is left holding
    exactly the changes made through the merged view, ready to be committed.
    """
    scratch = make_temp_dir(upper.parent, ".ovl-")
    merged = scratch / "m"
    merged.mkdir()
    work_dir = scratch / "w" if work is None else work
    work_dir.mkdir(exist_ok=True)
    try:
        mount_overlay(merged, lowers, upper, work_dir)
        try:
            yield merged
        finally:
            unmount(merged)
    finally:
        remove_tree(scratch)


def remove_tree(path: Path | str) -> None:
    """Remove a directory tree (overlay work dirs, whiteouts and all). Idempotent; iterative, so
    any depth works. Refuses to cross into another file system: a mount point left by mistake must
    never lose the data under it."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(top.st_mode):
        os.unlink(path)
        return
    stack = [os.fspath(path)]
    visited: set[str] = set()
    while stack:
        current = stack[-1]
        if current in visited:
            stack.pop()
            _ignore_missing(os.rmdir, current)
            continue
        visited.add(current)
        try:
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != top.st_dev:
                    raise RuntimeError_(f"{entry.path} is a mount point; not removing {path}")
                stack.append(entry.path)
            else:
                _ignore_missing(os.unlink, entry.path)


def _ignore_missing(fn: Callable[[str], None], path: str) -> None:
    try:
        fn(path)
    except FileNotFoundError:
        pass


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new private directory `parent/PREFIXrandom` (without importing tempfile: this is on the
    path every `run` takes)."""
    while True:
        candidate = parent / (prefix + os.urandom(6).hex())
        try:
            os.mkdir(candidate, 0o700)
            return candidate
        except FileExistsError:
            continue


def mount_points_under(path: Path | str) -> list[str]:
    """The mount points at or below `path` in this process's mount namespace (for leak checks)."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if (point + "/").startswith(prefix):
                found.append(point)
    return found
