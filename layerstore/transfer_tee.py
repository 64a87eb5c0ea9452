"""One pass over an incoming layer: the bytes written to its staged blob file are also decompressed,
hashed (the diff_id) and extracted (or, for a pull, only checked) on the way.

`LayerTee` takes the compressed stream in pieces (`write`) from the thread that downloads or reads
the blob and hashes and writes it; a helper thread decompresses each piece (bounded against bombs),
hashes the tar and feeds it to the store's safe extractor (`layerstore.layers.extract_into`), so
a hostile layer is refused while it arrives, and nothing is read twice.

Memory is flat: at most `DEPTH` pieces wait. Pieces read with `readinto` come in buffers lent by a
`BufferPool` and go back to it once the decompressor is done with them, so a download does not
allocate (and fault in) a new megabyte per read; the pool running dry is what paces the download
to the extraction. zstd (the store's default) is handed views of those buffers, not copies:
python-zstandard's stream reader asks for more input only after it has consumed what it was given,
and keeps no pointer into it after that (zstd copies what it must keep into its own window), so a
buffer it asks past can be reused. Other decompressors and a plain tar get bytes copies, since they
may keep what they were handed. Either way the diff_id is computed from what the extractor read,
so a mistake here could only fail a pull, never let a wrong layer in.
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
from pathlib import Path
from typing import cast

from layerstore.compression import Readable
from layerstore.layers import HashingReader, check_layer, extract_into
from layerstore.transfer_verify import CHUNK, BoundedDecompressor
from pybuild.errors import StoreError

DEPTH = 4  # pieces waiting for the helper thread, per layer
BUFFER = 1 << 20  # as python-zstandard asks for input (layerstore.compression.READ_SIZE)

Buffer = mmap.mmap  # a pool's buffer: page-aligned, writable, reusable
_Piece = tuple[bytes | bytearray | memoryview | Buffer, bool]  # (data, lent by the pool)


class BufferPool:
    """Up to `count` buffers of `size` bytes: `get` blocks while all are lent out. `spare` is where
    the buffers come from (and go back to when `close`d), so that a batch of downloads reuses them.

    A buffer is an anonymous mapping, not a bytearray: page-aligned, so that the staged blob file
    can be written from it with O_DIRECT (transfer_import), and untouched until first filled
    (bytearray zero-fills). A new one is made only when none is free and fewer than `count`
    exist: every fresh megabyte costs 256 page faults, dear on a VM whose host took the memory
    back, so a download starts on its first buffer and a small blob makes no more than it fills."""

    def __init__(self, count: int, size: int, spare: list[Buffer], lock: threading.Lock) -> None:
        self._free: queue.SimpleQueue[Buffer] = queue.SimpleQueue()
        self._spare, self._lock = spare, lock
        self._size = size
        self._unmade = count  # buffers this pool may still take from `spare` or make

    def get(self) -> Buffer:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._unmade > 0:
                self._unmade -= 1
                return self._spare.pop() if self._spare else mmap.mmap(-1, self._size)
        return self._free.get()

    def put(self, buf: Buffer) -> None:
        self._free.put(buf)

    def close(self) -> None:
        """Give back the buffers not lent out (a buffer still held by a failed helper thread is
        simply dropped)."""
        with self._lock:
            while True:
                try:
                    self._spare.append(self._free.get_nowait())
                except queue.Empty:
                    return


class LayerTee:
    """Compressed pieces in through `write`, in order; `finish` waits for the helper thread and
    returns (diff_id, uncompressed size), or raises what it raised (UnsafeLayer, ExpansionLimit,
    a damaged stream ...). With `target`, the layer is extracted into that new directory; without,
    it is only checked against the extractor's rules (`layer_check`)."""

    def __init__(self, compression: str, limit: int, what: str, target: Path | None,
                 pool: BufferPool | None = None) -> None:
        self._q: queue.Queue[_Piece | None] = queue.Queue(DEPTH)
        self._pool = pool
        self._views = compression == "zstd"
        self._cur: bytes | bytearray | memoryview | Buffer | None = None
        self._lent = False
        self._pos = self._end = 0
        self._eof = False
        self.error: BaseException | None = None
        self.target = target
        self._what = what
        # `read` hands zstd views of the pieces (see the module doc), the others bytes
        self._tar = HashingReader(BoundedDecompressor(cast(Readable, self), compression, limit=limit, what=what))
        self._aborted = False
        # Set when the helper thread has stopped touching `target` and the pool. Waited for instead
        # of Thread.join: CPython 3.11's join, interrupted by Ctrl-C, can mark a live thread as
        # stopped (bpo-45274), and then `target` would be removed under a running extractor.
        self._done = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="layer-tee").start()

    # -- the producer's side ---------------------------------------------------------------------

    def write(self, data: bytes | bytearray | Buffer, n: int, *, lent: bool = False) -> None:
        """Pass on the first `n` bytes of `data` (a buffer `lent` by the pool goes back to it when
        consumed). Raises the helper thread's error, if it has failed."""
        if self.error is not None:
            if lent and self._pool is not None:
                self._pool.put(data)  # type: ignore[arg-type]
            raise self.error
        self._q.put((data if n == len(data) else memoryview(data)[:n], lent))

    def finish(self) -> tuple[str, int]:
        self._q.put(None)
        self._done.wait()
        if self.error is not None:
            raise self.error
        return "sha256:" + self._tar.hash.hexdigest(), self._tar.size

    def abort(self) -> None:
        """Stop the helper thread soon (it stops at its next read) and return once it has stopped:
        only then may `target` be removed. Safe to call after `finish` and more than once."""
        self._aborted = True
        try:
            self._q.put_nowait(None)  # wakes a helper waiting for a piece; a full queue means it is busy
        except queue.Full:
            pass
        self._done.wait()

    # -- the helper thread -----------------------------------------------------------------------

    def read(self, n: int = -1) -> bytes | memoryview:
        """The decompressor's source: the next bytes of the current piece. Asking again means the
        previous piece is consumed, so its buffer goes back to the pool."""
        while self._cur is None or self._pos >= self._end:
            self._release()
            if self._aborted:
                raise StoreError(f"{self._what}: interrupted")
            if self._eof:
                return b""
            item = self._q.get()
            if item is None:
                self._eof = True
                return b""
            data, self._lent = item
            self._cur, self._pos, self._end = data, 0, len(data)
        take = self._end - self._pos if n is None or n < 0 else min(n, self._end - self._pos)
        start = self._pos
        self._pos += take
        cur = self._cur
        if self._views:
            return memoryview(cur)[start:start + take]
        if type(cur) is bytes and start == 0 and take == len(cur):
            return cur
        return bytes(memoryview(cur)[start:start + take])

    def _release(self) -> None:
        cur, self._cur = self._cur, None
        if cur is not None and self._lent and self._pool is not None:
            base = cur.obj if isinstance(cur, memoryview) else cur
            self._pool.put(base)  # type: ignore[arg-type]

    def _run(self) -> None:
        try:
            tar = self._tar
            try:
                if self.target is not None:
                    self.target.mkdir()
                    os.chmod(self.target, 0o755)  # the layer root, unless the tar has a "./" entry
                    extract_into(tar, self.target)
                else:
                    check_layer(tar)
            except StoreError as e:
                raise type(e)(f"{self._what}: {e.message}", hint=e.hint) from None
            while tar.read(CHUNK):  # what follows the end-of-archive blocks is part of the diff_id
                pass
        except BaseException as e:  # noqa: BLE001 - handed to the producer in write/finish
            self.error = e
        finally:
            self._release()
            while not self._eof:  # keep the producer from blocking on a full queue or an empty pool
                try:
                    item = self._q.get_nowait() if self._aborted else self._q.get()
                except queue.Empty:
                    break  # aborted: the producer sends nothing more
                if item is None:
                    self._eof = True
                else:
                    self._cur, self._lent = item
                    self._release()
            self._done.set()

