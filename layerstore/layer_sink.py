"""The commit pipeline after the tree walk: tar bytes -> sha256 (diff_id) -> compressor -> blob file.

The walk (layer_tar.write_tree) reads files: system calls that release the GIL. Hashing the tar,
compressing it, and hashing and writing the blob release it too. So the work runs on two helper
threads, each taking its chunks in order: one hashes the tar; the other compresses (single-threaded,
so that the output is reproducible: compression.py), then hashes and writes what the compressor
gave. The walk only reads and hands chunks on. Keeping the compressor's output on the thread that
made it matters: freed by another thread, the output's memory goes back and forth to the kernel,
and the page faults cost more than the writes.

At most MAX_PENDING chunks are in flight, which bounds memory whatever the layer's size. Large
files are read into buffers lent by the sink (`lend`/`take`) and reused once hashed and compressed:
reading a gigabyte into fresh bytes objects costs three times the copy from the page cache.
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from layerstore.compression import compressor

READ_SIZE = 1 << 20


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class LayerSink:
    """Call with successive chunks of the uncompressed tar (or fill buffers from `lend` and hand them
    back with `take`); `finish()` waits for every stage and re-raises the first error (e.g. a full
    disk). Then `diff_id` and `size` describe the tar, and `out` has received the whole compressed
    stream. Use as a context manager: leaving the block stops the threads, also on error."""

    MAX_PENDING = 8

    def __init__(self, out: _Writable, compression: str) -> None:
        self._out = out
        self._compressor = compressor(compression)
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="diff-id")
        self._packer = ThreadPoolExecutor(1, thread_name_prefix="compress")
        self._pending: deque[Future[None]] = deque()
        self._lent: deque[tuple[bytearray, Future[None], Future[None]]] = deque()
        self._free: list[bytearray] = []
        self._buffers = 0
        self.hash = hashlib.sha256()
        self.size = 0

    def __call__(self, data: bytes | bytearray | memoryview) -> None:
        """The next chunk, which this sink may keep (so a bytes object is not copied)."""
        self._submit(data if isinstance(data, bytes) else bytes(data))

    def lend(self) -> bytearray:
        """A buffer of READ_SIZE bytes to read the next chunk into and hand back with `take`."""
        while self._lent and self._lent[0][1].done() and self._lent[0][2].done():
            self._free.append(self._lent.popleft()[0])
        if self._free:
            return self._free.pop()
        if self._buffers < self.MAX_PENDING:
            self._buffers += 1
            return bytearray(READ_SIZE)
        buf, hashed, packed = self._lent.popleft()
        hashed.result()
        packed.result()
        return buf

    def take(self, buf: bytearray, n: int) -> None:
        """The first `n` bytes of `buf` (from `lend`) are the next chunk."""
        hashed, packed = self._submit(memoryview(buf)[:n])
        self._lent.append((buf, hashed, packed))

    def _submit(self, chunk: bytes | memoryview) -> tuple[Future[None], Future[None]]:
        self.size += len(chunk)
        hashed = self._hasher.submit(self.hash.update, chunk)
        packed = self._packer.submit(self._pack, chunk)
        self._pending += (hashed, packed)
        while len(self._pending) > 2 * self.MAX_PENDING:
            self._pending.popleft().result()
        return hashed, packed

    def _pack(self, chunk: bytes | memoryview) -> None:
        z = self._compressor.compress(chunk)
        if z:
            self._out.write(z)

    def _flush(self) -> None:
        z = self._compressor.flush()
        if z:
            self._out.write(z)

    def finish(self) -> None:
        self._pending.append(self._packer.submit(self._flush))
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> LayerSink:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._pending:
            f.cancel()
        self._packer.shutdown()
        self._hasher.shutdown()

    @property
    def diff_id(self) -> str:
        return "sha256:" + self.hash.hexdigest()
