"""The fork protocol shared by `run` and `exec`: caller -> shim -> container process.

    caller (P)                 shim (A)                        container process (B)
    pipes, fork  ---------->   PDEATHSIG, prepare()
                               (unshare or setns the PID ns),
                               fork  ------------------------>  child_main(ctx): namespaces,
                               "PID\\n" on the status pipe       root, stdio, credentials, execve
    reads PID, pty master,                                      (a failure: JSON on the error pipe)
    then the error pipe to EOF (= execve done)
                               waitpid(B) -> "STATUS\\n"
    reads STATUS, waitpid(A)

Why a shim: a PID namespace is entered by the *children* of whoever unshares or setns it, and a
process can do that only once; the shim makes it possible any number of times from one process
(the builder's). It stays in the caller's namespaces, holds the container's PID 1 as its child (the
only way to get its wait status), and both carry PR_SET_PDEATHSIG=SIGKILL, so a container never
outlives its caller or supervisor: killing that is killing the container, never leaving it
unaccounted for.

Forked children never return into the caller's stack: every path ends in os._exit.
"""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pybuild.errors import RuntimeError_
from runner import namespaces as ns
from runner.process import ChildFailure, close_fds, exit_reporting, read_failure, report_failure, stdio_to_devnull
from runner.streams import Relay

if TYPE_CHECKING:
    import socket

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGHUP)


@dataclass
class ChildContext:
    """What the container process (B) is handed: where to report failure and its stdio."""

    err_w: int
    stdin: int
    stdout: int
    stderr: int
    pty_sock: socket.socket | None
    winsize: tuple[int, int] | None

    def setup_stdio(self, *, console: bool = False) -> None:
        """Install stdio: a pty opened in the current root (master sent to the caller), or the
        given descriptors."""
        if self.pty_sock is not None:
            from runner import terminal  # already imported by `launch`, before the fork

            master, slave, path = terminal.open_container_pty(self.winsize)
            terminal.send_fd(self.pty_sock, master)
            os.close(master)
            self.pty_sock.close()
            self.pty_sock = None
            if console:
                from runner.rootfs import bind_console

                bind_console(path)
            terminal.make_controlling(slave)
            return
        # Move the descriptors out of the way first: one of them may already be 0, 1 or 2.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (self.stdin, self.stdout, self.stderr)]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
            os.close(fd)


ChildMain = Callable[[ChildContext], None]


@dataclass
class Launched:
    """A running container process as its caller sees it."""

    shim_pid: int
    pid: int  # host PID of the container process
    status_r: int
    master: int | None = None
    pidfd: int | None = None  # on the container process: signals never reach a reuser of its pid
    _status: int | None = None

    def signal(self, sig: int) -> None:
        """Send `sig` to the container process; nothing once it has exited."""
        if self.pidfd is None:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:
            pass

    def wait(self, relay: Relay | None = None) -> int:
        """Block until the container process has exited (output relayed meanwhile); its raw wait
        status. Idempotent."""
        if self._status is not None:
            return self._status
        if relay is None:
            relay = Relay()
        lines = relay.run(self.status_r)
        self._status = int(lines[0]) if lines else signal.SIGKILL  # a shim killed: a killed tree
        self._reap_shim()
        return self._status

    def close_master(self) -> None:
        """Close the pty master (the container's session gets a hang-up). Idempotent."""
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def abort(self) -> None:
        """Kill the container process and reap the shim (for cleanup after an error)."""
        if self._status is None:
            self.signal(signal.SIGKILL)
            self.wait()

    def _reap_shim(self) -> None:
        try:
            os.waitpid(self.shim_pid, 0)
        except ChildProcessError:
            pass
        for fd in (self.status_r, self.master, self.pidfd):
            if fd is not None and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.status_r = -1
        self.master = None
        self.pidfd = None


def proxy_signals(launched: Launched) -> None:
    """For a caller attached to a terminal: the signals it gets go to the container process
    (docker's sig-proxy), and terminal resizes to the container's pty."""
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, lambda s, _f: launched.signal(s))
    if launched.master is not None:
        signal.signal(signal.SIGWINCH, lambda _s, _f: _copy_winsize(launched.master))


def _copy_winsize(master: int | None) -> None:
    from runner import terminal

    size = terminal.get_winsize(0)
    if size is not None and master is not None:
        try:
            terminal.set_winsize(master, size)
        except OSError:
            pass


def launch(
    prepare_shim: Callable[[], None],
    child_main: ChildMain,
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    tty: bool = False,
    winsize: tuple[int, int] | None = None,
    on_pid: Callable[[int], None] | None = None,
) -> Launched:
    """Start the container process (see the module docstring). Returns once it has exec'd; raises
    RuntimeError_ (exit_code 125, 126 or 127 as Docker has them) if it could not.

    `on_pid(pid)` is called as soon as the container process exists, while it is still setting
    itself up (so a caller's bookkeeping overlaps that work)."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    parent_sock: socket.socket | None = None
    child_sock: socket.socket | None = None
    if tty:
        import socket

        from runner import terminal  # imported here: the child can no longer after pivot_root

        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    caller = os.getpid()
    shim = os.fork()
    if shim == 0:  # pragma: no cover - the shim
        code = 125
        try:
            os.close(err_r)
            os.close(status_r)
            if parent_sock is not None:
                parent_sock.close()
            code = _shim(caller, prepare_shim, child_main, ChildContext(err_w, stdin, stdout, stderr, child_sock, winsize), status_w)
        except BaseException as e:  # noqa: BLE001 - report anything, then exit: never return
            report_failure(err_w, f"container setup failed: {e}", 125)
        finally:
            os._exit(code)
    os.close(err_w)
    os.close(status_w)
    if child_sock is not None:
        child_sock.close()
    launched = Launched(shim, 0, status_r)
    try:
        pid_line = _read_line(status_r)
        launched.pid = int(pid_line) if pid_line else 0
        launched.pidfd = _child_pidfd(launched.pid, shim) if launched.pid else None
        if on_pid is not None and launched.pid:
            on_pid(launched.pid)
        if parent_sock is not None:  # a tty: `terminal` was imported above
            launched.master = terminal.receive_fd(parent_sock)
        failure = read_failure(err_r)
    except BaseException:
        launched.abort()  # nothing may outlive a failed launch
        raise
    finally:
        os.close(err_r)
        if parent_sock is not None:
            parent_sock.close()
    if failure is not None or launched.pid == 0:
        launched.abort()
        if failure is None:
            failure = ChildFailure("the container process could not be started")
        error = RuntimeError_(failure.message)
        error.exit_code = failure.code
        raise error
    return launched


def _shim(caller: int, prepare: Callable[[], None], child_main: ChildMain, ctx: ChildContext, status_w: int) -> int:
    ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != caller:
        return 125  # the caller died before we could ask to die with it
    for sig in _TERMINAL_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    # Nothing of the caller's (store lock, other containers' pipes) may be held by the shim or
    # the container.
    keep = [ctx.err_w, status_w, ctx.stdin, ctx.stdout, ctx.stderr]
    if ctx.pty_sock is not None:
        keep.append(ctx.pty_sock.fileno())
    close_fds(keep)
    prepare()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the container process
        exit_reporting(ctx.err_w, lambda: child_main(ctx))
    os.write(status_w, f"{pid}\n".encode())
    for fd in (ctx.err_w, ctx.stdin, ctx.stdout, ctx.stderr):
        try:
            os.close(fd)
        except OSError:
            pass
    if ctx.pty_sock is not None:
        ctx.pty_sock.close()
    # The shim writes nothing: its copies of the caller's stdio must not keep a pipe's reader
    # waiting once the caller (and the container) let go of it.
    stdio_to_devnull()
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            status = signal.SIGKILL
            break
    os.write(status_w, f"{status}\n".encode())
    return 0


def _child_pidfd(pid: int, parent: int) -> int | None:
    """A pidfd on `pid` if that is still a child of `parent` (the shim, whose only child is the
    container process), else None: the process has exited, been reaped and its pid may be
    another process's by now."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])  # the name may hold ") "
    except (OSError, ValueError, IndexError):
        ppid = 0
    if ppid != parent:
        os.close(fd)
        return None
    return fd


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()
