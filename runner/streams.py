"""Moving bytes between a running container and the outside: a poll loop that copies output to
callbacks (terminal, log, a builder's progress display) and input into a pty, until the container
has exited and its output is drained.
"""

from __future__ import annotations

import errno
import os
import select
import time
from collections.abc import Callable

OutputCallback = Callable[[bytes], None]
# After the status line arrives, output still buffered in pipes is drained for at most this long
# (every writer is dead by then; this only guards against a descriptor leaked to a daemon).
DRAIN_SECONDS = 2.0
_CHUNK = 65536


class StopReading(Exception):
    """Raised by a source's callback when what it writes to is gone (a closed pipe): the relay
    stops reading that source and closes it, so the container's next write fails as it would
    in a shell pipeline (`pybuild run busybox yes | head -1` ends)."""


class Relay:
    """Sources (fd -> callback) are read until EOF; forwards copy one fd into another (stdin into
    a pty master); watches are descriptors that carry no data and whose hang-up means something
    (the attached CLI died). `run` returns the lines read from the status fd once the container's
    status has arrived and every source is drained."""

    def __init__(self) -> None:
        self.sources: dict[int, OutputCallback] = {}
        self.closers: dict[int, Callable[[], None]] = {}
        self.forwards: dict[int, int] = {}
        self.watches: dict[int, Callable[[], None]] = {}
        self._poller: select.poll | None = None

    def add_source(self, fd: int, callback: OutputCallback, *, close: Callable[[], None] | None = None) -> None:
        """Read `fd` into `callback` until EOF. `close`: how to close it once it is no longer
        read (then the relay owns it: `close_all` closes it if `run` never did)."""
        self.sources[fd] = callback
        if close is not None:
            self.closers[fd] = close

    def add_forward(self, src: int, dst: int) -> None:
        self.forwards[src] = dst

    def add_watch(self, fd: int, on_hangup: Callable[[], None]) -> None:
        """Call `on_hangup` once when the other end of `fd` closes (anything read is dropped)."""
        self.watches[fd] = on_hangup

    def stop_forwards(self) -> None:
        """Stop copying input (from a watch's callback: nobody is typing any more)."""
        for src in self.forwards:
            self._unregister(src)
        self.forwards.clear()

    def close_all(self) -> None:
        """Close every source the relay owns and has not closed yet. Idempotent."""
        for fd in list(self.closers):
            self.closers.pop(fd)()

    def _unregister(self, fd: int) -> None:
        if self._poller is not None:
            try:
                self._poller.unregister(fd)
            except KeyError:
                pass

    def _stop_source(self, fd: int, open_sources: set[int]) -> None:
        open_sources.discard(fd)
        self._unregister(fd)
        closer = self.closers.pop(fd, None)
        if closer is not None:
            closer()

    def run(self, status_fd: int) -> list[str]:
        self._poller = poller = select.poll()
        for fd in [*self.sources, *self.forwards, *self.watches, status_fd]:
            poller.register(fd, select.POLLIN)
        open_sources = set(self.sources)
        status_buf = b""
        status_done = False
        drain_deadline: float | None = None
        while open_sources or not status_done:
            timeout_ms: int | None = None
            if status_done:
                assert drain_deadline is not None
                remaining = drain_deadline - time.monotonic()
                if remaining <= 0:
                    break
                timeout_ms = max(1, int(remaining * 1000))
            for fd, _event in poller.poll(timeout_ms):
                if fd == status_fd:
                    chunk = _read(fd)
                    status_buf += chunk
                    if not chunk or b"\n" in status_buf:
                        status_done = True
                        drain_deadline = time.monotonic() + DRAIN_SECONDS
                        poller.unregister(fd)
                elif fd in self.sources and fd in open_sources:
                    chunk = _read(fd)
                    try:
                        if chunk:
                            self.sources[fd](chunk)
                            continue
                    except StopReading:
                        pass
                    self._stop_source(fd, open_sources)
                elif fd in self.watches:
                    if not _read(fd):
                        poller.unregister(fd)
                        self.watches.pop(fd)()
                elif fd in self.forwards:
                    chunk = _read(fd)
                    if not chunk:
                        poller.unregister(fd)
                        continue
                    try:
                        write_all(self.forwards[fd], chunk)
                    except OSError:
                        poller.unregister(fd)
        self._poller = None
        return status_buf.decode().splitlines()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except OSError as e:
        if e.errno == errno.EIO:  # a pty master whose last slave closed
            return b""
        raise


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def writer_to(fd: int) -> OutputCallback:
    """A callback writing everything to `fd` (ignoring a closed reader, as `docker run | head`)."""

    def write(data: bytes) -> None:
        try:
            write_all(fd, data)
        except BrokenPipeError:
            pass

    return write
