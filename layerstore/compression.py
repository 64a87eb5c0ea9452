"""Layer compression: media types, and streaming compressors and decompressors with pinned settings.

zstd is the default (level 3, single-threaded, no checksum frame: the digest covers the content),
so the same tar gives the same blob with the same zstd library, however the tar is cut into chunks.
Single-threaded because zstd's multithreaded mode writes other bytes (and cost three times the CPU
in bench/store_bench.py), and on the 2-core machines we target the other core is busy hashing the
tar (layer_sink.LayerSink). gzip is written on request (umoci and older registries need it) with
zlib's fixed header (mtime 0), so it is reproducible too.

The codec modules are imported where a stream is made, not with this module: most users of the
store (resolving an image to run it, listing) only need the media types.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

from pybuild.errors import StoreError

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = LAYER_TAR + "+gzip"
LAYER_ZSTD = LAYER_TAR + "+zstd"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
NONDIST_PREFIX = "application/vnd.oci.image.layer.nondistributable.v1.tar"

MEDIA_TYPES = {"zstd": LAYER_ZSTD, "gzip": LAYER_GZIP, "none": LAYER_TAR}
COMPRESSIONS = tuple(MEDIA_TYPES)
ZSTD_LEVEL = 3
GZIP_LEVEL = 6
READ_SIZE = 1 << 20


class Compressor(Protocol):
    def compress(self, data: bytes | bytearray | memoryview) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""


def compressor(compression: str) -> Compressor:
    """A fresh streaming compressor for `compression` ("zstd", "gzip" or "none")."""
    if compression == "zstd":
        import zstandard

        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0, write_checksum=False, write_content_size=False)
        return cctx.compressobj()
    if compression == "gzip":
        import zlib

        return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip wrapper, mtime 0
    if compression == "none":
        return _Identity()
    raise StoreError(f"unknown compression {compression!r}", hint="use zstd, gzip or none")


def compression_of(media_type: str) -> str:
    """"zstd", "gzip" or "none" for a layer media type; StoreError for other types."""
    base = media_type.replace(".nondistributable", "").replace("nondistributable.", "")
    if base.endswith("+zstd") or base.endswith(".zstd"):
        return "zstd"
    if base.endswith("+gzip") or base in (DOCKER_LAYER_GZIP, DOCKER_FOREIGN_GZIP) or base.endswith(".gzip"):
        return "gzip"
    if base in (LAYER_TAR, "application/vnd.docker.image.rootfs.diff.tar"):
        return "none"
    raise StoreError(f"unsupported layer media type {media_type!r}")


class _ZstdReader:
    def __init__(self, f: BinaryIO) -> None:
        import zstandard

        self._r = zstandard.ZstdDecompressor().stream_reader(f, read_size=READ_SIZE, read_across_frames=True)
        self._error = zstandard.ZstdError

    def read(self, n: int = -1) -> bytes:
        try:
            return self._r.read(READ_SIZE if n < 0 else n)
        except self._error as e:
            raise StoreError(f"zstd stream is damaged: {e}") from None


class _ModuleReader:
    """gzip (several members allowed), bzip2 and xz through the standard library's streaming
    readers, with their errors turned into StoreError."""

    def __init__(self, f: BinaryIO, kind: str) -> None:
        import bz2
        import gzip
        import lzma
        import zlib

        opener = {"gzip": gzip.GzipFile, "bzip2": bz2.BZ2File, "xz": lzma.LZMAFile}[kind]
        self._errors = (OSError, EOFError, zlib.error, lzma.LZMAError)
        self._r: BinaryIO = opener(fileobj=f) if kind == "gzip" else opener(f)
        self._kind = kind

    def read(self, n: int = -1) -> bytes:
        try:
            return self._r.read(READ_SIZE if n < 0 else n)
        except self._errors as e:
            raise StoreError(f"{self._kind} stream is damaged: {e}") from None


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def decompressor(f: Readable, compression: str) -> Readable:
    """A reader of the uncompressed bytes of `f` (never reads more than READ_SIZE at once)."""
    if compression == "zstd":
        return _ZstdReader(f)  # type: ignore[arg-type]
    if compression in ("gzip", "bzip2", "xz"):
        return _ModuleReader(f, compression)  # type: ignore[arg-type]
    if compression == "none":
        return f
    raise StoreError(f"unknown compression {compression!r}")


def sniff(head: bytes) -> str:
    """The compression of a stream, from its first bytes (for `import`, which takes any tarball)."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return "none"
