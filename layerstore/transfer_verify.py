"""Trust nothing that arrives: streams that hash and count what passes through them.

A registry or an archive says a blob has digest D and size N. The store's `VerifyingReader`
(layerstore.blobs, re-exported here) hands the bytes on while hashing them and refuses (raising,
never returning the last bytes) a stream that runs past N, ends before N, or hashes to something
other than D. `BoundedDecompressor` gives the uncompressed bytes of a gzip or zstd layer and
refuses one that expands past a limit, so a small "bomb" cannot fill the disk. Both are plain
file-like readers, so they compose with the tar reader and the store.
"""

from __future__ import annotations

from typing import BinaryIO

from layerstore.blobs import CHUNK, VerifyingReader
from layerstore.compression import Readable, decompressor
from layerstore.digests import SizeMismatch, check_bytes, digest_of, hasher_for
from pybuild.errors import StoreError

__all__ = [
    "CHUNK", "BoundedDecompressor", "ExpansionLimit", "Readable", "SizeMismatch", "VerifyingReader", "check_bytes",
    "copy_verified", "digest_of", "expansion_limit", "hasher_for",
]

# A compressed layer may expand to max(EXPANSION_FLOOR, EXPANSION_RATIO * its size) bytes. gzip
# cannot exceed ~1032:1 on any input; zstd can reach far more on runs of zeros, which real layers
# rarely hold in bulk; the floor lets small layers holding a zero-filled file through.
EXPANSION_RATIO = 1024
EXPANSION_FLOOR = 1 << 30


class ExpansionLimit(StoreError):
    """A compressed stream that expands past the limit (a decompression bomb, or a layer too big)."""


def copy_verified(reader: VerifyingReader, sink: BinaryIO) -> int:
    """Copy all of `reader` to `sink`; return the byte count. Raises before the last bytes reach
    `sink` if the content is not the promised blob."""
    while data := reader.read(CHUNK):
        sink.write(data)
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
