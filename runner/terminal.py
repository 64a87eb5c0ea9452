"""Pseudo-terminals for `-t`: created inside the container, driven from outside.

The pty pair is opened in the container's own devpts instance (after pivot_root), so `tty` inside
prints a /dev/pts path that exists there, as with runc. The master descriptor is passed to the
outside over a unix socket (SCM_RIGHTS); the outside relays it to its own terminal (in raw mode)
or to the log, and forwards window-size changes.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
from typing import Any

WINSIZE = "HHHH"


def open_container_pty(winsize: tuple[int, int] | None) -> tuple[int, int, str]:
    """(master, slave, slave path) from the current root's /dev/ptmx, sized rows x cols."""
    master, slave = os.openpty()
    if winsize is not None:
        set_winsize(slave, winsize)
    return master, slave, os.ttyname(slave)


def make_controlling(slave: int) -> None:
    """Make `slave` the controlling terminal of this (session leader) process and its stdio."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def send_fd(sock: socket.socket, fd: int) -> None:
    socket.send_fds(sock, [b"pty"], [fd])


def receive_fd(sock: socket.socket) -> int | None:
    """The descriptor sent on `sock`, or None if the sender closed it without sending."""
    _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    return fds[0] if fds else None


def get_winsize(fd: int) -> tuple[int, int] | None:
    """(rows, cols) of the terminal at `fd`, or None when it is not a terminal."""
    try:
        rows, cols, _, _ = struct.unpack(WINSIZE, fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols


def set_winsize(fd: int, size: tuple[int, int]) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack(WINSIZE, size[0], size[1], 0, 0))


class raw_mode:  # noqa: N801 - used as a context manager, as contextlib's are
    """Put the terminal at `fd` in raw mode for a `with` block (no-op when it is not a terminal).
    `restore` puts the saved settings back early (an attached CLI that died cannot); idempotent."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: list[Any] | None = None

    def __enter__(self) -> raw_mode:
        if os.isatty(self.fd):
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
        return self

    def restore(self) -> None:
        if self.saved is not None:
            saved, self.saved = self.saved, None
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
            except termios.error:
                pass  # the terminal is gone

    def __exit__(self, *_exc: object) -> None:
        self.restore()
