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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from layerstore.atomic import atomic_writer, fsync_dir
from layerstore.compression import Readable
from layerstore.digests import SizeMismatch, hasher_for, hex_of, is_hex
from layerstore.layout import Layout
from pybuild.errors import DigestMismatch, NotFound, PybuildError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Written:
    """What a write produced: the blob's digest and size."""

    digest: str
    size: int


class BlobWriter:
    """What `Blobs.writer` yields: a sink that hashes and counts what passes through it on the way
    to the staged file; after the block, `result` holds digest and size."""

    result: Written

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
    """Reads `raw` and promises that the bytes it returns are exactly the blob `digest` of `size`
    bytes: the one reader for every blob, read from the store or arriving from outside.

    The error is raised by the read that would pass the end (or the read at the end that finds the
    stream short or hashing wrong), never after the last bytes were handed over as good: a
    consumer that reads to EOF, as copies, tar readers and `drain` do, cannot finish with
    unverified data. `truncated` makes the error for a short stream from its message (a registry
    that hung up is a RegistryError); by default it is a SizeMismatch.
    """

    def __init__(
        self,
        raw: Readable,
        digest: str,
        size: int,
        *,
        what: str,
        truncated: Callable[[str], PybuildError] | None = None,
    ) -> None:
        self._raw = raw
        self._hash = hasher_for(digest, what)
        self.digest = digest
        self.size = size
        self.what = what
        self._truncated = truncated
        self.count = 0
        self.verified = False

    def read(self, n: int = -1) -> bytes:
        if self.verified or n == 0:
            return b""
        remaining = self.size - self.count
        want = remaining + 1 if n is None or n < 0 else min(n, remaining + 1)
        data = self._raw.read(want)
        if len(data) > remaining:
            raise SizeMismatch(self.what, expected=self.size, got=f"more than {self.size} bytes")
        if data:
            self.count += len(data)
            self._hash.update(data)
            if self.count < self.size:
                return data
            # The last bytes: make sure nothing follows before handing them over.
            if self._raw.read(1):
                raise SizeMismatch(self.what, expected=self.size, got=f"more than {self.size} bytes")
        elif self.count < self.size:
            if self._truncated is not None:
                raise self._truncated(f"{self.what}: stream ended after {self.count} of {self.size} bytes")
            raise SizeMismatch(self.what, expected=self.size, got=f"{self.count} bytes")
        got = f"{self.digest.split(':')[0]}:{self._hash.hexdigest()}"
        if got != self.digest:
            raise DigestMismatch(self.what, expected=self.digest, got=got)
        self.verified = True
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        b = self.read(len(buf))
        buf[: len(b)] = b
        return len(b)

    def drain(self) -> None:
        """Read (and so verify) whatever is left."""
        while not self.verified:
            self.read(CHUNK)


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
        """Move a complete, verified, fsynced, read-only (0444) file into place as blob `digest`
        (or, if that blob exists, keep the existing one and refresh its mtime)."""
        target = self.path(digest)
        if target.exists():
            os.utime(target)
            return target
        os.rename(staged, target)
        fsync_dir(target.parent)
        return target

    @contextmanager
    def open(self, digest: str, *, size: int | None = None) -> Iterator[VerifyingReader]:
        """A reader of blob `digest` (of `size` bytes, if the caller knows it from a descriptor)
        that raises DigestMismatch rather than finish with damaged content. NotFound if absent."""
        try:
            f = open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None
        with f:
            expected = os.fstat(f.fileno()).st_size if size is None else size
            yield VerifyingReader(f, digest, expected, what=f"blob {digest}")

    def read(self, digest: str, *, size: int | None = None) -> bytes:
        """The whole (small) blob, verified."""
        with self.open(digest, size=size) as r:
            data = r.read()
            r.drain()
        return data

    def verify(self, digest: str, *, size: int | None = None) -> None:
        """Re-hash blob `digest`; DigestMismatch if damaged, NotFound if absent."""
        with self.open(digest, size=size) as r:
            r.drain()

    def all(self) -> Iterator[str]:
        """Every stored blob's digest (names that are not digests are skipped)."""
        for name in os.listdir(self.layout.blobs):
            if is_hex(name):
                yield "sha256:" + name

