"""The one way pybuild writes a file in the store: temp file, write, fsync, rename, fsync the
directory.

A reader sees either the old file or the complete new one, and after a crash the new name exists
only if its contents reached the disk. Temp files are created in a directory on the same
filesystem as the target (the store's `tmp/`, or the target's own directory), so the rename is
atomic; a crash leaves at most a temp file for gc.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: Path, *, tmp_dir: Path | None = None, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file; when the block ends without an exception its contents replace `path`
    atomically and durably. On an exception the temp file is removed and `path` is untouched.

    `tmp_dir` must be on the same filesystem as `path` (default: `path`'s directory).
    """
    directory = path.parent
    staging = tmp_dir or directory
    fd, tmp = _create_temp(staging, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


_counter = itertools.count()


def _create_temp(directory: Path, name: str) -> tuple[int, Path]:
    """A new, exclusively created temp file in `directory` (not `tempfile`: importing it costs
    milliseconds on every CLI call that writes state)."""
    while True:
        tmp = directory / f".{name}.{os.getpid()}.{next(_counter)}.{os.urandom(4).hex()}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), tmp
        except FileExistsError:
            continue


def private_dir(parent: Path, prefix: str) -> Path:
    """A new directory in `parent` that only its owner may enter (0700), as `tempfile.mkdtemp`
    makes one, without importing tempfile (and the shutil and random it imports: ~2 ms)."""
    while True:
        path = parent / f"{prefix}{os.urandom(6).hex()}"
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def atomic_write(path: Path, data: bytes, *, tmp_dir: Path | None = None, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically and durably (see `atomic_writer`)."""
    with atomic_writer(path, tmp_dir=tmp_dir, mode=mode) as f:
        f.write(data)
