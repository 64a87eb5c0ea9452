"""Image archives as files: reading one (a tar stream or a directory) into staging, and writing
one (a tar stream or a directory) from store blobs without re-reading them through Python.

Reading makes one pass: every regular file is staged (hashed, layers decompressed on the side, see
transfer_import); small metadata files (`index.json`, `manifest.json`, ...) are also kept in
memory. Names are only ever dictionary keys here, never paths we write to, so a hostile name
(`../../etc/passwd`) can name nothing outside the archive; links are followed inside the archive's
own namespace. Writing copies blob files with `sendfile` (a hardlink for a directory on the
store's file system when asked), so saving an image already in the store costs little more than
the copy itself.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from layerstore.atomic import atomic_write, fsync_dir
from layerstore.tar_format import DIRECTORY, END_OF_ARCHIVE, HARDLINK, REGULAR, SYMLINK, TarEntry, TarReader, encode_header, padding
from layerstore.transfer_import import Staged, Staging
from layerstore.transfer_verify import Readable
from pybuild.errors import StoreError

METADATA = frozenset({"oci-layout", "index.json", "manifest.json", "repositories"})
MAX_METADATA = 4 * 1024 * 1024
_BLOB_NAME = re.compile(r"^blobs/(sha256|sha512)/([0-9a-f]+)$")
_MAX_LINK_DEPTH = 16
_COPY = 8 * 1024 * 1024


def normalize(name: str) -> str:
    """`./blobs//sha256/x` -> `blobs/sha256/x`; `..` cannot climb above the archive's root."""
    return posixpath.normpath("/" + name).lstrip("/")


@dataclass
class ArchiveFiles:
    """The files of one archive: staged blobs by name, links, and small metadata in memory."""

    what: str
    staged: dict[str, Staged] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, bytes] = field(default_factory=dict)

    def resolve(self, name: str) -> str:
        name = normalize(name)
        for _ in range(_MAX_LINK_DEPTH):
            if name not in self.links:
                return name
            name = self.links[name]
        raise StoreError(f"{self.what}: {name}: too many levels of links")

    def get(self, name: str) -> Staged | None:
        return self.staged.get(self.resolve(name))

    def meta(self, name: str) -> bytes | None:
        return self.metadata.get(self.resolve(name))


def _stage_file(files: ArchiveFiles, staging: Staging, name: str, source: Readable | Iterator[bytes], size: int) -> None:
    m = _BLOB_NAME.match(name)
    expected = f"{m.group(1)}:{m.group(2)}" if m else None
    what = f"{files.what}: {name}"
    if name in METADATA and size <= MAX_METADATA:
        data = b"".join(source if not hasattr(source, "read") else iter(lambda: source.read(1 << 20), b""))
        files.metadata[name] = data
        return
    files.staged[name] = staging.stage(source, what=what, size_hint=size, expected=expected, expected_size=size)


def read_tar(stream: Readable, staging: Staging, what: str) -> ArchiveFiles:
    """Stage every file of the tar read from `stream`."""
    files = ArchiveFiles(what)
    reader = TarReader(stream)
    try:
        for entry in reader:
            name = normalize(entry.name.decode("utf-8", "surrogateescape"))
            if entry.type == REGULAR:
                _stage_file(files, staging, name, reader.data(), entry.size)
            elif entry.type == SYMLINK:
                target = entry.linkname.decode("utf-8", "surrogateescape")
                files.links[name] = normalize(posixpath.join(posixpath.dirname(name), target))
            elif entry.type == HARDLINK:
                files.links[name] = normalize(entry.linkname.decode("utf-8", "surrogateescape"))
            # directories and anything else carry nothing an image needs
    except StoreError as e:
        if e.message.startswith(what):
            raise
        raise type(e)(f"{what}: {e.message}", hint=e.hint) from None
    if not files.staged and not files.metadata:
        raise StoreError(f"{what}: empty archive, or not a tar archive")
    return files


def read_dir(root: Path, staging: Staging, what: str) -> ArchiveFiles:
    """Stage every regular file under `root` (symlinks are followed only inside it)."""
    files = ArchiveFiles(what)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for fname in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, fname)
            name = normalize(os.path.join(rel_dir, fname))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                files.links[name] = normalize(posixpath.join(posixpath.dirname(name), os.readlink(path)))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    _stage_file(files, staging, name, f, st.st_size)
    if not files.staged and not files.metadata:
        raise StoreError(f"{what}: no image files in this directory")
    return files


# ---------------------------------------------------------------------------------------- writing


class ArchiveWriter(Protocol):
    def add_bytes(self, name: str, data: bytes) -> None: ...
    def add_file(self, name: str, path: Path, size: int) -> None: ...
    def has(self, name: str) -> bool: ...
    def finish(self) -> None: ...


class TarWriter:
    """Writes a tar archive to `out` (a file or a pipe): deterministic headers (mtime 0, uid 0,
    mode 0644/0755), file data copied by the kernel where it can be. Each name is written once."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._fd = out.fileno()
        self._names: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self._names

    def _dirs(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._names:
                self._names.add(d)
                self._write(encode_header(TarEntry(name=d.encode(), type=DIRECTORY, mode=0o755)))

    def _write(self, data: bytes) -> None:
        self._out.write(data)

    def add_bytes(self, name: str, data: bytes) -> None:
        if name in self._names:
            return
        self._dirs(name)
        self._names.add(name)
        self._write(encode_header(TarEntry(name=name.encode(), type=REGULAR, size=len(data))))
        self._write(data + b"\0" * padding(len(data)))

    def add_file(self, name: str, path: Path, size: int) -> None:
        if name in self._names:
            return
        self._dirs(name)
        self._names.add(name)
        self._write(encode_header(TarEntry(name=name.encode(), type=REGULAR, size=size)))
        self._out.flush()
        with open(path, "rb") as f:
            sent = _copy_fd(f.fileno(), self._fd, size)
        if sent != size:
            raise StoreError(f"{path}: changed while being saved ({sent} of {size} bytes)")
        self._write(b"\0" * padding(size))

    def finish(self) -> None:
        self._write(END_OF_ARCHIVE)
        self._out.flush()


def _copy_fd(src: int, dst: int, size: int) -> int:
    """Copy `size` bytes from `src` to `dst` in the kernel (sendfile), or by reads where it refuses."""
    done = 0
    try:
        while done < size:
            n = os.sendfile(dst, src, done, min(size - done, 1 << 30))
            if n == 0:
                break
            done += n
        return done
    except OSError:
        pass
    os.lseek(src, done, os.SEEK_SET)
    while done < size:
        chunk = os.read(src, min(_COPY, size - done))
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]
        done += len(chunk)
    return done


class DirWriter:
    """Writes an archive as a directory. Blob files are hardlinked from the store when `link` and
    on the same file system (they are read-only there: never edit a saved directory's blobs in
    place), copied otherwise. Files are written whole, then renamed into place."""

    def __init__(self, root: Path, *, link: bool = False) -> None:
        self.root = root
        self.link = link
        root.mkdir(parents=True, exist_ok=True)

    def has(self, name: str) -> bool:
        return (self.root / name).exists()

    def _target(self, name: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add_bytes(self, name: str, data: bytes) -> None:
        atomic_write(self._target(name), data)

    def add_file(self, name: str, path: Path, size: int) -> None:
        target = self._target(name)
        if target.exists() and target.stat().st_size == size:
            return
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.unlink(missing_ok=True)
        if self.link:
            try:
                os.link(path, tmp)
                os.replace(tmp, target)
                return
            except OSError:
                pass
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    def finish(self) -> None:
        fsync_dir(self.root)

