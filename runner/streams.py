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


class Relay:
    """Sources (fd -> callback) are read until EOF; forwards copy one fd into another (stdin into
    a pty master). `run` returns the lines read from the status fd once the container's status
    has arrived and every source is drained."""

    def __init__(self) -> None:
        self.sources: dict[int, OutputCallback] = {}
        self.forwards: dict[int, int] = {}

    def add_source(self, fd: int, callback: OutputCallback) -> None:
        self.sources[fd] = callback

    def add_forward(self, src: int, dst: int) -> None:
        self.forwards[src] = dst

    def run(self, status_fd: int, *, lines_wanted: int = 1) -> list[str]:
        poller = select.poll()
        for fd in list(self.sources) + list(self.forwards) + [status_fd]:
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
                    if not chunk or status_buf.count(b"\n") >= lines_wanted:
                        status_done = True
                        drain_deadline = time.monotonic() + DRAIN_SECONDS
                        poller.unregister(fd)
                elif fd in self.sources:
                    chunk = _read(fd)
                    if chunk:
                        self.sources[fd](chunk)
                    else:
                        open_sources.discard(fd)
                        poller.unregister(fd)
                else:
                    chunk = _read(fd)
                    if not chunk:
                        poller.unregister(fd)
                        continue
                    try:
                        _write_all(self.forwards[fd], chunk)
                    except OSError:
                        poller.unregister(fd)
        return status_buf.decode().splitlines()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except OSError as e:
        if e.errno == errno.EIO:  # a pty master whose last slave closed
            return b""
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def writer_to(fd: int) -> OutputCallback:
    """A callback writing everything to `fd` (ignoring a closed reader, as `docker run | head`)."""

    def write(data: bytes) -> None:
        try:
            _write_all(fd, data)
        except BrokenPipeError:
            pass

    return write
