"""Trust nothing that arrives: streams that hash and count what passes through them.

A registry or an archive says a blob has digest D and size N. `VerifyingReader` hands the bytes on
while hashing them and refuses (raising, never returning the last bytes) a stream that runs past N,
ends before N, or hashes to something other than D. `BoundedDecompressor` gives the uncompressed
bytes of a gzip or zstd layer and refuses one that expands past a limit, so a small "bomb" cannot
fill the disk. Both are plain file-like readers, so they compose with tarfile and the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

from layerstore.compression import decompressor
from layerstore.digests import digest_of
from pybuild.errors import DigestMismatch, PybuildError, StoreError

__all__ = ["BoundedDecompressor", "SizeMismatch", "VerifyingReader", "check_bytes", "copy_verified", "digest_of"]

CHUNK = 1024 * 1024

# A compressed layer may expand to max(EXPANSION_FLOOR, EXPANSION_RATIO * its size) bytes. gzip
# cannot exceed ~1032:1 on any input; zstd can reach far more on runs of zeros, which real layers
# rarely hold in bulk; the floor lets small layers holding a zero-filled file through.
EXPANSION_RATIO = 1024
EXPANSION_FLOOR = 1 << 30


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class SizeMismatch(DigestMismatch):
    """Content longer or shorter than its descriptor's size."""

    def __init__(self, what: str, *, expected: int, got: str, hint: str | None = None) -> None:
        super().__init__(what, expected=f"{expected} bytes", got=got, hint=hint)
        self.message = f"{what}: size mismatch: its descriptor says {expected} bytes, got {got}"


class ExpansionLimit(StoreError):
    """A compressed stream that expands past the limit (a decompression bomb, or a layer too big)."""


def hasher_for(digest: str, what: str) -> Any:
    """A hashlib object for `digest`'s algorithm (sha256, sha512); StoreError otherwise."""
    algo, sep, hexpart = digest.partition(":")
    lengths = {"sha256": 64, "sha512": 128}
    if not sep or algo not in lengths or len(hexpart) != lengths[algo] or not all(
        c in "0123456789abcdef" for c in hexpart
    ):
        raise StoreError(f"{what}: unsupported or malformed digest {digest!r}")
    return hashlib.new(algo)


def check_bytes(data: bytes, *, digest: str, size: int | None, what: str) -> bytes:
    """`data` if it has `digest` (and `size`, when given); DigestMismatch/SizeMismatch otherwise."""
    if size is not None and len(data) != size:
        raise SizeMismatch(what, expected=size, got=f"{len(data)} bytes")
    h = hasher_for(digest, what)
    h.update(data)
    got = f"{digest.split(':')[0]}:{h.hexdigest()}"
    if got != digest:
        raise DigestMismatch(what, expected=digest, got=got)
    return data


class VerifyingReader:
    """Reads `raw` and promises that the bytes it returns are exactly the blob `digest` of `size`.

    The error is raised by the read that would pass the end (or the read at the end that finds the
    stream short or hashing wrong), so a consumer that reads to EOF, as copies and tar readers do,
    cannot finish with unverified data. `truncated` makes the error for a short stream (a registry
    that hung up is a RegistryError, a cut archive a StoreError).
    """

    def __init__(
        self,
        raw: Readable,
        *,
        digest: str,
        size: int,
        what: str,
        truncated: Callable[[str], PybuildError] = StoreError,
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
        if self.verified:
            return b""
        remaining = self.size - self.count
        want = remaining + 1 if n is None or n < 0 else min(n, remaining + 1) or 1
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
            raise self._truncated(f"{self.what}: stream ended after {self.count} of {self.size} bytes")
        self._finish()
        return data

    def _finish(self) -> None:
        got = f"{self.digest.split(':')[0]}:{self._hash.hexdigest()}"
        if got != self.digest:
            raise DigestMismatch(self.what, expected=self.digest, got=got)
        self.verified = True

    def drain(self) -> None:
        """Read (and so verify) whatever is left."""
        while self.read(CHUNK):
            pass
        if not self.verified:
            self.read(CHUNK)


def copy_verified(reader: VerifyingReader, sink: BinaryIO) -> int:
    """Copy all of `reader` to `sink`; return the byte count. Raises before the last bytes reach
    `sink` if the content is not the promised blob."""
    while True:
        data = reader.read(CHUNK)
        if not data:
            break
        sink.write(data)
    if not reader.verified:
        reader.drain()
    return reader.count


def expansion_limit(compressed_size: int) -> int:
    return max(EXPANSION_FLOOR, EXPANSION_RATIO * compressed_size)


class BoundedDecompressor:
    """The uncompressed bytes of a `gzip`, `zstd` or `none` stream (the store's decompressors:
    concatenated gzip members and zstd frames read as one stream), refusing more than `limit`.
    Each read yields at most what was asked, so the bound holds before memory or disk is spent."""

    def __init__(self, raw: Readable, compression: str, *, limit: int, what: str) -> None:
        if compression not in ("gzip", "zstd", "none"):
            raise StoreError(f"{what}: unsupported compression {compression!r}")
        self._reader = decompressor(raw, compression)
        self._compression = compression
        self.limit = limit
        self.what = what
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = CHUNK
        try:
            data = self._reader.read(max(1, min(n, self.limit - self.count + 1)))
        except StoreError as e:
            raise StoreError(f"{self.what}: {e.message}", hint=e.hint) from None
        self.count += len(data)
        if self.count > self.limit:
            raise ExpansionLimit(
                f"{self.what}: {self._compression} stream expands past {self.limit} bytes; refusing it",
                hint="a decompression bomb, or a layer larger than pybuild accepts",
            )
        return data
