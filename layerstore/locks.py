"""The store's two lock protocols, each written once and used everywhere.

1. The store lock: `flock` on `<root>/lock`, shared for normal work (any number of builds, runs,
   imports at once) and exclusive for gc, which must not sweep an object another process is about
   to reference.
2. Ref locks, as git has them: `<ref>.lock` created with O_EXCL holds the new value; it is renamed
   over the ref to publish it. Updates are compare-and-swap under the lock. The lock file is also
   flocked by its owner, so a lock left behind by a killed process is recognised (no flock holder,
   older than a moment) and broken instead of blocking the ref for ever.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from layerstore.atomic import fsync_dir
from pybuild.errors import StoreError

# A lock file this old with no flock holder was left by a dead process (the owner flocks it
# microseconds after creating it).
STALE_AFTER_SECONDS = 2.0
DEFAULT_TIMEOUT_SECONDS = 60.0
_POLL_SECONDS = 0.005


@contextmanager
def store_lock(root: Path, *, exclusive: bool = False, timeout: float | None = None) -> Iterator[None]:
    """Hold the store lock for the block: shared by default, exclusive for gc.

    `timeout=None` waits for ever; otherwise a StoreError names the store when it expires.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = _open_lock_file(root / "lock")
    try:
        op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if timeout is None:
            fcntl.flock(fd, op)
        else:
            _flock_with_deadline(fd, op, time.monotonic() + timeout, what=f"store {root}")
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def _open_lock_file(path: Path) -> int:
    """The store's lock file, for flock. A store on a read-only file system (or one this user may
    not write) is opened read-only, which flock takes as well: reading commands work there, and
    whatever tries to write fails with the file system's own error."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not path.exists():
            raise
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _flock_with_deadline(fd: int, op: int, deadline: float, *, what: str) -> None:
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise StoreBusy(f"{what} is locked by another pybuild process", hint="try again when it finishes")
            time.sleep(_POLL_SECONDS)


class StoreBusy(StoreError):
    """The store lock could not be had before the deadline (another pybuild process holds it)."""


class RefChanged(StoreError):
    """A compare-and-swap ref update lost the race: the ref no longer holds the expected value."""


@dataclass
class RefLock:
    """A held `<ref>.lock`. Read `current`, then `commit(new)` or `delete()`; leaving the block
    without either releases the lock and leaves the ref as it was."""

    ref: Path
    lock: Path
    fd: int
    current: str | None
    done: bool = field(default=False)

    def commit(self, value: str) -> None:
        """Publish `value` (one line) as the ref's new contents, atomically and durably."""
        data = value.rstrip("\n").encode() + b"\n"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)
        os.rename(self.lock, self.ref)
        fsync_dir(self.ref.parent)
        self.done = True

    def delete(self) -> None:
        """Remove the ref (if present) while holding its lock."""
        try:
            os.unlink(self.ref)
        except FileNotFoundError:
            pass
        fsync_dir(self.ref.parent)


@contextmanager
def locked_ref(ref: Path, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Iterator[RefLock]:
    """Take `<ref>.lock`, yield a RefLock with the ref's current value, release on exit.

    Waits up to `timeout` seconds for another holder; breaks a stale lock left by a dead process.
    """
    ref.parent.mkdir(parents=True, exist_ok=True)
    lock = ref.with_name(ref.name + ".lock")
    deadline = time.monotonic() + timeout
    fd = _acquire_lock_file(lock, deadline, ref)
    held = RefLock(ref=ref, lock=lock, fd=fd, current=read_ref(ref))
    try:
        yield held
    finally:
        if not held.done:
            try:
                os.unlink(lock)
            except FileNotFoundError:
                pass
        os.close(fd)


def update_ref(
    ref: Path,
    new: str | None,
    *,
    expected: str | None | object = ...,
    before: Callable[[str | None], None] | None = None,
    what: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> str | None:
    """Set (or, with `new=None`, delete) a ref under its lock and return the value it replaced.

    With `expected` given, this is a compare-and-swap: if the ref does not hold `expected` (None
    meaning absent) RefChanged is raised and nothing is written. `before(current)` runs under the
    lock once the compare has passed and before the new value is published (the reflog is written
    there, so that it can never miss a change). Deleting a ref that does not exist does nothing
    and calls nothing. `what` names the ref in messages (default: its file name).
    """
    with locked_ref(ref, timeout=timeout) as held:
        if expected is not ... and held.current != expected:
            raise RefChanged(f"{what or 'ref ' + ref.name} changed concurrently: expected {expected}, found {held.current}")
        if held.current is None and new is None:
            return None
        if before is not None:
            before(held.current)
        if new is None:
            held.delete()
        else:
            held.commit(new)
        return held.current


def read_ref(ref: Path) -> str | None:
    """The ref's value without its newline, or None if it does not exist."""
    try:
        return ref.read_text().strip() or None
    except FileNotFoundError:
        return None


def _acquire_lock_file(lock: Path, deadline: float, ref: Path) -> int:
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            if _break_if_stale(lock):
                continue
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"{ref}: is locked ({lock.name} exists)",
                    hint=f"if no pybuild process is running, remove {lock}",
                ) from None
            time.sleep(_POLL_SECONDS)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Someone judged our brand-new file stale and took it over; start again.
            os.close(fd)
            continue
        return fd


def is_stale(lock: Path, *, min_age: float = STALE_AFTER_SECONDS) -> bool:
    """True if `lock` exists, no process holds its flock, and it is older than `min_age` seconds
    (a live owner flocks its lock file microseconds after creating it)."""
    with _opened(lock) as fd:
        return fd is not None and _unheld_and_old(fd, min_age)


@contextmanager
def _opened(path: Path) -> Iterator[int | None]:
    """A descriptor of `path` for the block (read-only is enough for flock), None if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _unheld_and_old(fd: int, min_age: float) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live owner holds it
    return time.time() - os.fstat(fd).st_mtime >= min_age


def _break_if_stale(lock: Path) -> bool:
    """Remove `lock` if its owner is gone; True if it was removed (or vanished meanwhile)."""
    with _opened(lock) as fd:
        if fd is None:
            return True
        if not _unheld_and_old(fd, STALE_AFTER_SECONDS):
            return False
        try:
            if os.stat(lock).st_ino != os.fstat(fd).st_ino:
                return True  # replaced meanwhile; look again
            os.unlink(lock)
        except FileNotFoundError:
            pass
        except OSError as e:  # e.g. a read-only store
            raise StoreError(f"cannot remove stale lock {lock}: {e.strerror}") from e
        return True
