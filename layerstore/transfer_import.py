"""Bringing images into the store from outside (load, pull): stage, verify everything, then publish.

Every incoming blob is first written to a private staging directory under the store's `tmp/`,
hashed as it is written; a layer is also decompressed (with a bound, against bombs) on a helper
thread in the same pass to get its diff_id, and extracted (load) or checked against the
extractor's rules (pull). Only when every image of the batch checks out (blob
digests, sizes, diff_ids against the config, the history invariant, no missing blob) are the staged
files renamed into `blobs/`, the layer records and commit records written, and then, last, the
tags set. A refused load or pull therefore publishes nothing and tags nothing; its staging
directory is removed (gc sweeps it after a crash).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from layerstore.compression import compression_of, sniff
from layerstore.digests import load_json
from layerstore.images import Image
from layerstore.layers import Layer, remove_tree
from layerstore.lazylog import Logger
from layerstore.oci import Descriptor, ImageConfig, Manifest, check_history
from layerstore.store import Store
from layerstore.transfer_tee import BUFFER, DEPTH, Buffer, BufferPool, LayerTee
from layerstore.transfer_verify import CHUNK, Readable, SizeMismatch, expansion_limit, hasher_for
from pybuild.errors import DigestMismatch, StoreError

log = Logger(__name__)

MAX_CONFIG_BYTES = 16 * 1024 * 1024
HEAD = 1024  # the first bytes of a blob that say whether it is a layer (looks_like_layer)
# Bytes per write(2) of a staged blob written through the page cache (see _BlobFile for when it
# is not). Megabyte writes make the kernel (6.x ext4, large folios) take page-cache folios of up to
# a megabyte, and on VMs whose balloon hands free memory back to the host (free page reporting, as
# on the machines pybuild is benchmarked on) those come from exactly the blocks that were handed
# back, so every copy into them waits for the host. 64 KiB pieces suffer less and cost nothing
# measurable when memory is at hand; 32 KiB ones (Go's io.Copy, skopeo) cost 5% in calls.
WRITE_PIECE = 64 * 1024
# O_DIRECT needs the file offset, the length and the memory address aligned to the device's logical
# block size; a page (the pool's buffers are page-aligned) satisfies every common device.
DIRECT_ALIGN = 4096
SYNC_THREADS = 4  # staged files fsynced at once (each waits for the disk, not for a CPU)


@dataclass(frozen=True)
class Staged:
    """A file staged for the store: its digest and size (computed). For a file that looks like a
    layer (gzip, zstd or tar), `diff_id` and `uncompressed_size` describe its tar, which was checked
    against the extractor's rules or (staged with `extract`) extracted, safely, to `unpacked`; for
    anything else they are the digest and size."""

    path: Path
    digest: str
    size: int
    compression: str
    diff_id: str
    uncompressed_size: int
    unpacked: Path | None = None


def looks_like_layer(head: bytes) -> str | None:
    """The compression of a blob whose first bytes look like a layer (gzip, zstd, or a tar)."""
    kind = sniff(head[:8])
    if kind in ("gzip", "zstd"):
        return kind
    if head[257:262] == b"ustar" or (len(head) >= 1024 and not head[:1024].strip(b"\0")):
        return "none"
    return None


class Staging:
    """A private directory under the store's `tmp/` holding one batch of incoming blobs by digest.
    Use as a context manager; leaving the block removes whatever was not published."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.mkdtemp("transfer-")
        self.blobs: dict[str, Staged] = {}
        self._lock = threading.Lock()
        self._n = 0
        self._spare: list[Buffer] = []  # download buffers, reused by the next blob
        self._cancelled = threading.Event()
        self._syncer = _Syncer()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self._syncer.close()
        remove_tree(self.dir, self.store.tmp)

    def synced(self) -> None:
        """Wait until every staged file is on the disk, as publishing needs (see _Syncer)."""
        self._syncer.wait()

    def cancel(self) -> None:
        """Make every `stage` in progress (on any thread) stop at its next piece."""
        self._cancelled.set()

    def stage(self, source: Readable | Iterable[bytes], *, what: str, size_hint: int = 0,
              expected: str | None = None, expected_size: int | None = None, layer: bool = True,
              extract: bool = True) -> Staged:
        """Write `source` (a reader, or an iterable of chunks) to a staged file and hash it; when
        `layer` and its first bytes look like a layer (gzip, zstd, tar), also decompress it (bounded)
        and extract it (safely) on the side, for its diff_id and its unpacked directory: one pass,
        nothing is read back. Without `extract` the layer is only checked against the extractor's
        rules (`layer_check`), and unpacked on its first use. With `expected` (and `expected_size`) the content must be that blob,
        or DigestMismatch/SizeMismatch; the size is checked as the bytes arrive."""
        with self._lock:
            self._n += 1
            path = self.dir / f"blob-{self._n}"
        # a blob of known size needs no more buffers than it fills (a config: one)
        pieces = -(-max(size_hint, expected_size or 0) // BUFFER) or DEPTH
        pool = BufferPool(min(DEPTH, pieces), BUFFER, self._spare, self._lock) if hasattr(source, "readinto") else None
        h = hasher_for(expected, what) if expected else hashlib.sha256()
        count = 0
        tee: LayerTee | None = None
        compression = "none"
        try:
            out = _BlobFile(path, expected_size)
            try:
                first = True
                for data, n in _pieces(source, pool):
                    if self._cancelled.is_set():
                        if pool is not None:
                            pool.put(data)  # type: ignore[arg-type]
                        raise StoreError(f"{what}: interrupted")
                    view = memoryview(data)[:n]
                    if first:
                        first = False
                        kind = looks_like_layer(bytes(view[:1024])) if layer else None
                        if kind is not None:
                            compression = kind
                            limit = expansion_limit(max(size_hint, expected_size or 0, n))
                            target = path.with_name(path.name + ".unpacked") if extract else None
                            tee = LayerTee(kind, limit, what, target, pool)
                    count += n
                    if expected_size is not None and count > expected_size:
                        raise SizeMismatch(what, expected=expected_size, got=f"more than {expected_size} bytes")
                    h.update(view)
                    out.write(view, aligned=pool is not None)  # pool buffers are page-aligned
                    view.release()
                    if tee is not None:
                        tee.write(data, n, lent=pool is not None)
                    elif pool is not None:
                        pool.put(data)  # type: ignore[arg-type]
                out.finish()
                self._syncer.submit(path)
            finally:
                out.close()
            digest = f"{(expected or 'sha256:').split(':')[0]}:{h.hexdigest()}"
            if expected_size is not None and count != expected_size:
                raise SizeMismatch(what, expected=expected_size, got=f"{count} bytes")
            if expected is not None and digest != expected:
                raise DigestMismatch(what, expected=expected, got=digest)
            diff_id, usize = tee.finish() if tee is not None else (digest, count)
        except BaseException:
            if tee is not None:
                tee.abort()
                if tee.target is not None:
                    remove_tree(tee.target, self.store.tmp)
            path.unlink(missing_ok=True)
            raise
        finally:
            if pool is not None:
                pool.close()
        staged = Staged(path, digest, count, compression, diff_id, usize, tee.target if tee else None)
        with self._lock:
            self.blobs.setdefault(digest, staged)
        return staged

    def read(self, digest: str, what: str, limit: int = MAX_CONFIG_BYTES) -> bytes:
        """A small staged blob's bytes (manifests, configs)."""
        staged = self.blobs.get(digest)
        if staged is None:
            raise StoreError(f"{what}: blob {digest} is missing")
        if staged.size > limit:
            raise StoreError(f"{what}: {staged.size} bytes is larger than the {limit} allowed")
        return staged.path.read_bytes()


@dataclass(frozen=True)
class Incoming:
    """One image to bring in: its manifest's exact bytes (an OCI or Docker image manifest), and the
    names to tag it with once everything is verified."""

    manifest: bytes
    manifest_digest: str
    names: tuple[str, ...] = ()
    source: str = ""


def check_incoming(store: Store, staging: Staging, images: Sequence[Incoming]) -> list[tuple[Incoming, list[Layer]]]:
    """Verify every image of a batch against what is staged (or already stored), before anything is
    published. Returns each image with its layers. Raises the first problem; a batch that lacks
    layer blobs (an incremental bundle loaded into the wrong store) gets one error naming all of them."""
    checked: list[tuple[Incoming, list[Layer]]] = []
    missing: list[str] = []
    for image in images:
        what = f"{image.source or 'image'} {image.manifest_digest}".strip()
        manifest = Manifest.from_json(load_json(image.manifest, f"manifest {image.manifest_digest}"), what)
        config_bytes = _blob_bytes(store, staging, manifest.config, f"{what}: config")
        config = ImageConfig.from_json(load_json(config_bytes, f"config {manifest.config.digest}"),
                                       f"config {manifest.config.digest}")
        check_history(config, manifest, what)
        layers: list[Layer] = []
        for i, (desc, diff_id) in enumerate(zip(manifest.layers, config.diff_ids, strict=True)):
            lwhat = f"{what}: layer {i + 1} ({desc.digest})"
            staged = staging.blobs.get(desc.digest)
            if staged is None:
                if store.blobs.has(desc.digest):
                    layers.append(Layer(diff_id, desc.digest, desc.size, desc.media_type))
                else:
                    missing.append(desc.digest)
                continue
            layers.append(_check_layer(staged, desc, diff_id, lwhat))
        checked.append((image, layers))
    if missing:
        names = ", ".join(dict.fromkeys(missing))
        raise StoreError(f"missing {len(set(missing))} layer(s) that the store lacks: {names}",
                         hint="load the image this bundle was made against (save --since) first")
    return checked


def _check_layer(staged: Staged, desc: Descriptor, diff_id: str, what: str) -> Layer:
    if staged.size != desc.size:
        raise SizeMismatch(what, expected=desc.size, got=f"{staged.size} bytes")
    declared = compression_of(desc.media_type)
    if declared != staged.compression:
        raise StoreError(f"{what}: media type says {declared} but the content is {staged.compression}")
    if staged.diff_id != diff_id:
        raise DigestMismatch(f"{what}: diff_id", expected=diff_id, got=staged.diff_id)
    return Layer(diff_id, desc.digest, desc.size, desc.media_type, staged.uncompressed_size)


def _blob_bytes(store: Store, staging: Staging, desc: Descriptor, what: str) -> bytes:
    if desc.size > MAX_CONFIG_BYTES:
        raise StoreError(f"{what}: {desc.size} bytes is larger than the {MAX_CONFIG_BYTES} allowed")
    staged = staging.blobs.get(desc.digest)
    if staged is not None:
        if staged.size != desc.size:
            raise SizeMismatch(what, expected=desc.size, got=f"{staged.size} bytes")
        return staging.read(desc.digest, what)
    if store.blobs.has(desc.digest):
        return store.blobs.read(desc.digest, size=desc.size)
    raise StoreError(f"{what}: blob {desc.digest} is missing")


def commit_incoming(store: Store, staging: Staging, images: Sequence[Incoming], *, instruction: str,
                    message: str | None = None) -> list[Image]:
    """Verify the batch (`check_incoming`), then publish: blobs, layer records, commit records, and
    last the tags. Returns the images in order."""
    checked = check_incoming(store, staging, images)
    staging.synced()
    out: list[Image] = []
    for image, layers in checked:
        manifest = Manifest.from_json(load_json(image.manifest, "manifest"), "manifest")
        for digest in (manifest.config.digest, *(layer.digest for layer in layers)):
            staged = staging.blobs.get(digest)
            if staged is not None and staged.path.exists():
                store.blobs.publish(staged.path, digest)
        for layer in layers:
            if layer.uncompressed_size or store.layers.known(layer.diff_id) is None:
                store.layers.record(layer)
            staged = staging.blobs.get(layer.digest)
            if staged is not None and staged.unpacked is not None and staged.unpacked.is_dir():
                store.layers.publish_unpacked(staged.unpacked, layer.diff_id)
        store.blobs.put(image.manifest, expected=image.manifest_digest)
        out.append(store.images.register(image.manifest_digest, instruction=instruction, message=message))
    for (image, _), stored in zip(checked, out, strict=True):
        for name in image.names:
            store.tags.set(name, stored.digest, message=instruction)
    return out


def _pieces(source: Readable | Iterable[bytes], pool: BufferPool | None) -> Iterator[tuple[bytes | Buffer, int]]:
    """(data, length) pieces of `source`: read into the pool's buffers when there is a pool (the
    consumer gives each buffer back), else chunks as the reader or iterable gives them. The first
    piece holds at least HEAD bytes (or the whole stream), for `looks_like_layer`."""
    if pool is not None:
        readinto = source.readinto  # type: ignore[union-attr]
        first = True
        while True:
            buf = pool.get()
            n = readinto(buf)
            while first and 0 < n < HEAD and (more := readinto(memoryview(buf)[n:])):
                n += more
            first = False
            if not n:
                pool.put(buf)
                return
            yield buf, n
    if hasattr(source, "read"):
        read = source.read
        chunks: Iterable[bytes] = iter(lambda: read(CHUNK), b"")
    else:
        chunks = source
    head: bytes | None = b""  # None once the first piece is out
    for chunk in chunks:
        if head is not None:
            head += chunk
            if len(head) < HEAD:
                continue
            chunk, head = head, None
        if chunk:
            yield chunk, len(chunk)
    if head:
        yield head, len(head)


class _BlobFile:
    """A staged blob being written. Preallocated to its size when the size is known (a
    descriptor's): ext4 then skips the per-page delayed-allocation work on every write, a third of
    the write's CPU time; where the file system cannot (or the disk is too full) the writes go as
    usual, and a stream that stops short is refused by its size check and its file removed, so the
    zeros allocated past its end are never published. `finish` makes it read-only (0444, as every
    blob is); Staging's `_Syncer` makes it durable before it is published.

    Pieces from the download pool (`aligned`: whole pages at page offsets) are written with
    O_DIRECT, from the buffer straight to the disk: no copy into the page cache, no writeback
    later, nothing left for the closing fsync but metadata, and no page-cache memory taken from a
    host that reclaimed it (on such VMs the copy alone made pulls after heavy disk work half again
    slower, bench/transfer_bench.py); a blob pulled to be pushed or saved on has no use for the
    cache either. The first bytes that are not whole pages at a page offset (a blob's last few
    bytes, a reader's odd piece), or a file system or device that refuses direct I/O, switch the
    file to ordinary writes for the rest: the bytes are the same either way."""

    def __init__(self, path: Path, size: int | None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.offset = 0
        if size:
            try:
                os.posix_fallocate(self.fd, 0, size)
            except OSError as e:
                log.debug("preallocating %d bytes for %s: %s", size, path, e.strerror)
        self.direct = _set_direct(self.fd, True)

    def write(self, data: memoryview, *, aligned: bool = False) -> None:
        if self.direct and aligned and self.offset % DIRECT_ALIGN == 0:
            whole = len(data) - len(data) % DIRECT_ALIGN  # the pages of it; the rest is the blob's tail
            n = 0
            if whole:
                try:
                    n = os.write(self.fd, data[:whole])
                except OSError as e:
                    if e.errno != errno.EINVAL:  # EINVAL: the device wants another alignment
                        raise
            self.offset += n
            data = data[n:]  # the tail, or what a direct write left (a full disk says so below)
            if not data:
                return
        if self.direct:
            self.direct = _set_direct(self.fd, False)
        for start in range(0, len(data), WRITE_PIECE):
            _write_all(self.fd, data[start:start + WRITE_PIECE])
        self.offset += len(data)

    def finish(self) -> None:
        """Complete: read-only (0444, as every blob is) and closed; `_Syncer` makes it durable."""
        os.fchmod(self.fd, 0o444)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Syncer:
    """Makes staged files durable (fsync) on up to SYNC_THREADS threads of its own, from the moment
    each file's last byte is written, so that the download or archive member after it need not
    wait for the disk (a 50 MB layer's fsync took ~13 ms here, all of it otherwise idle); `wait`
    before publishing. Files come closed and are opened again by path (fsync makes a file durable
    through any descriptor of it), so that a batch of hundreds of blobs keeps no more descriptors
    or threads open than SYNC_THREADS."""

    def __init__(self) -> None:
        self._paths: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._pending = 0
        self._workers = 0
        self._errors: list[tuple[Path, BaseException]] = []

    def submit(self, path: Path) -> None:
        with self._cond:
            self._pending += 1
            if self._workers < SYNC_THREADS:
                threading.Thread(target=self._run, name="stage-sync", daemon=True).start()
                self._workers += 1
        self._paths.put(path)

    def _run(self) -> None:
        while (path := self._paths.get()) is not None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except BaseException as e:  # noqa: BLE001 - reported by `wait`
                with self._cond:
                    self._errors.append((path, e))
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def wait(self) -> None:
        """Return once every file submitted is durable; StoreError for the first that is not."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0)
            errors, self._errors = self._errors, []
        for path, e in errors:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
            raise StoreError(f"{path}: cannot write it to the disk: {why}")

    def close(self) -> None:
        """Wait for what is in hand (ignoring failures: the batch is being abandoned or is done)
        and stop the threads."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0)
            workers, self._workers = self._workers, 0
        for _ in range(workers):
            self._paths.put(None)


def _set_direct(fd: int, on: bool) -> bool:
    """Switch O_DIRECT on or off for `fd`; whether it is on (False where the file system refuses)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | os.O_DIRECT) if on else (flags & ~os.O_DIRECT))
    except OSError:
        return False
    return on


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]
