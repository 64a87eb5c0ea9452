"""Content-addressed blobs under `blobs/sha256/<hex>`: manifests, configs, layers.

Promises: a blob file exists only with its complete, fsynced contents, named by the sha256 of those
contents (it is verified before the rename that publishes it). Putting content that is already
stored is idempotent: the existing file is kept and its mtime refreshed so gc's grace period
protects it. Blobs are read-only (0444). Reads through `open` verify the digest at end of stream,
so damaged content is refused rather than returned.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from layerstore.atomic import atomic_writer, fsync_dir
from layerstore.digests import hex_of, is_hex
from layerstore.layout import Layout
from pybuild.errors import DigestMismatch, NotFound

CHUNK = 1 << 20


@dataclass(frozen=True)
class Written:
    """What a write produced: the blob's digest and size."""

    digest: str
    size: int


class HashingWriter:
    """A sink that hashes and counts what passes through it on the way to `out`."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class VerifyingReader:
    """Reads `f` and, at end of stream, raises DigestMismatch unless the bytes read hash to
    `digest` and number `size` (when given). Callers must read to the end to get the check."""

    def __init__(self, f: BinaryIO, digest: str, size: int | None, what: str) -> None:
        self._f = f
        self._digest = digest
        self._size = size
        self._what = what
        self._hash = hashlib.sha256()
        self.count = 0
        self.verified = False

    def read(self, n: int = -1) -> bytes:
        b = self._f.read(n)
        if b:
            self._hash.update(b)
            self.count += len(b)
            if self._size is not None and self.count > self._size:
                raise DigestMismatch(self._what, expected=f"{self._size} bytes", got="more")
        elif not self.verified and (n != 0):
            self._check()
        return b

    def readinto(self, buf: bytearray | memoryview) -> int:
        b = self.read(len(buf))
        buf[: len(b)] = b
        return len(b)

    def _check(self) -> None:
        got = "sha256:" + self._hash.hexdigest()
        if self._size is not None and self.count != self._size:
            raise DigestMismatch(self._what, expected=f"{self._size} bytes", got=f"{self.count} bytes")
        if got != self._digest:
            raise DigestMismatch(self._what, expected=self._digest, got=got)
        self.verified = True

    def read_to_end(self) -> None:
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        self._f.close()


class Blobs:
    """The blob store of one store root."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def path(self, digest: str) -> Path:
        return self.layout.blob(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None

    def put(self, data: bytes, *, expected: str | None = None) -> Written:
        """Store `data`; with `expected`, refuse it (DigestMismatch) unless it has that digest."""
        with self.writer(expected=expected, expected_size=None if expected is None else len(data)) as w:
            w.write(data)
        return w.result

    def put_stream(self, stream: BinaryIO, *, expected: str | None = None, expected_size: int | None = None) -> Written:
        """Store everything read from `stream`, verifying digest and size when given."""
        with self.writer(expected=expected, expected_size=expected_size) as w:
            while chunk := stream.read(CHUNK):
                w.write(chunk)
        return w.result

    @contextmanager
    def writer(self, *, expected: str | None = None, expected_size: int | None = None) -> Iterator[BlobWriter]:
        """Yield a BlobWriter; when the block ends the content is verified and published, and
        `writer.result` says where it went. On error nothing is published."""
        if expected is not None:
            hex_of(expected)
        staged = self.layout.tmp / f"blob-{os.urandom(16).hex()}"
        try:
            with atomic_writer(staged, tmp_dir=self.layout.tmp, mode=0o444) as f:
                w = BlobWriter(f)
                yield w
                if expected_size is not None and w.size != expected_size:
                    raise DigestMismatch(f"blob {expected or ''}".strip(), expected=f"{expected_size} bytes", got=f"{w.size} bytes")
                if expected is not None and w.digest != expected:
                    raise DigestMismatch(f"blob {expected}", expected=expected, got=w.digest)
            self.publish(staged, w.digest)
            w.result = Written(w.digest, w.size)
        finally:
            staged.unlink(missing_ok=True)

    def publish(self, staged: Path, digest: str) -> Path:
        """Move a complete, verified, fsynced file into place as blob `digest` (or, if that blob
        exists, keep the existing one and refresh its mtime)."""
        target = self.path(digest)
        if target.exists():
            os.utime(target)
            return target
        os.rename(staged, target)
        fsync_dir(target.parent)
        return target

    @contextmanager
    def open(self, digest: str, *, size: int | None = None) -> Iterator[VerifyingReader]:
        """A reader of blob `digest` that raises DigestMismatch at end of stream if the content is
        damaged. NotFound if absent."""
        try:
            f = open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None
        with f:
            yield VerifyingReader(f, digest, size, f"blob {digest}")

    def read(self, digest: str, *, size: int | None = None) -> bytes:
        """The whole (small) blob, verified."""
        with self.open(digest, size=size) as r:
            data = r.read()
            r.read()  # end of stream: verify
        return data

    def verify(self, digest: str, *, size: int | None = None) -> None:
        """Re-hash blob `digest`; DigestMismatch if damaged, NotFound if absent."""
        with self.open(digest, size=size) as r:
            r.read_to_end()

    def all(self) -> Iterator[str]:
        """Every stored blob's digest (names that are not digests are skipped)."""
        for name in os.listdir(self.layout.blobs):
            if is_hex(name):
                yield "sha256:" + name


class BlobWriter(HashingWriter):
    """The writer `Blobs.writer` yields; after the block, `result` holds digest and size."""

    result: Written

    def __init__(self, out: BinaryIO) -> None:
        super().__init__(out)

