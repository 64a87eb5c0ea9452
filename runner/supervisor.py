"""Holding a running container: the one piece of code that starts a container, records it as
running, relays its output, records how it ended, and cleans up.

`hold` runs in the foreground CLI (`run` without -d) or in a detached supervisor (`run -d`,
`start`): a process double-forked from the CLI into its own session, with no terminal and none of
the CLI's descriptors, so it outlives the CLI. The container's shim and PID 1 die with their
holder (PR_SET_PDEATHSIG), so the record can always be made true: either the holder records the
exit, or the holder is dead and so is the container (runner.state.observed says so).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from pybuild.errors import PybuildError, RuntimeError_
from runner import containers, logfile, state
from runner.launch import proxy_signals
from runner.process import close_fds
from runner.sandbox import Sandbox
from runner.spec import ExitStatus
from runner.streams import Relay, writer_to


@dataclass(frozen=True)
class Attach:
    """Where a held container's stdio goes.

    `terminal`: the caller's fds 0/1/2 are attached (foreground); otherwise the output goes to
    the log only (detached). `log`: whether to keep a log (not for a foreground `--rm`, which is
    removed when it ends, so that path stays as direct as possible).
    """

    terminal: bool
    log: bool


def hold(root: Path, cdir: Path, attach: Attach, *, ready: Callable[[], None] | None = None) -> ExitStatus:
    """Start the container in `cdir`, hold it until it exits, record everything; its exit status.

    Raises RuntimeError_ (exit_code 125/126/127) if it could not start; the record then says
    exited with that code and the error.
    """
    record = state.load(cdir)
    c = record.config
    sandbox = Sandbox(containers.sandbox_spec(cdir, record), cdir, cgroup_name=record.id)
    opened: list[int] = []
    relay = Relay()
    writer = logfile.LogWriter(cdir / "log") if attach.log else None
    launched = None
    try:
        sandbox.prepare()
        assert sandbox.cgroup is not None
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        opened.append(null)
        stdin = 0 if (attach.terminal and c.open_stdin and not c.tty) else null
        if c.open_stdin and not attach.terminal and not c.tty:
            r, w = os.pipe2(os.O_CLOEXEC)  # -di: stdin stays open, nobody writes
            opened += [r, w]
            stdin = r
        stdout, stderr = (1, 2) if attach.terminal else (null, null)
        child_ends: list[int] = []
        if writer is not None and not c.tty:
            for stream, fd_out in ((logfile.STDOUT, 1), (logfile.STDERR, 2)):
                r, w = os.pipe2(os.O_CLOEXEC)
                opened += [r, w]
                child_ends.append(w)
                relay.add_source(r, _tee(writer, stream, fd_out if attach.terminal else None))
            stdout, stderr = child_ends
        winsize = None
        if attach.terminal and c.tty:
            from runner import terminal

            winsize = terminal.get_winsize(0)
        cgroup = sandbox.cgroup.to_json()

        def record_running(pid: int) -> None:  # overlaps the container's own setup
            state.update(cdir, cgroup=cgroup, **_running_fields(pid))

        launched = sandbox.start(stdin=stdin, stdout=stdout, stderr=stderr, winsize=winsize, on_pid=record_running)
        for fd in child_ends:
            os.close(fd)
            opened.remove(fd)
        if launched.master is not None:
            relay.add_source(launched.master, _tee(writer, logfile.STDOUT, 1 if attach.terminal else None))
            if attach.terminal and c.open_stdin:
                relay.add_forward(0, launched.master)
        if ready is not None:
            ready()
        if attach.terminal:
            proxy_signals(launched)
        else:  # a detached supervisor asked to end passes that on, and still records the exit
            signal.signal(signal.SIGTERM, lambda _s, _f: launched.signal(signal.SIGTERM))
        with _raw_mode(0) if (attach.terminal and c.tty and c.open_stdin) else nullcontext():
            status = sandbox.wait(relay)
    except RuntimeError_ as e:
        if launched is None:  # it never started
            _record_exit(cdir, ExitStatus(e.exit_code), error=e.message)
        raise
    except BaseException:
        if launched is not None:  # interrupted while holding it: it is killed, say so
            launched.abort()
            _record_exit(cdir, ExitStatus.from_wait_status(launched.wait()), error="killed: pybuild was interrupted")
        raise
    finally:
        for fd in opened:
            os.close(fd)
        if writer is not None:
            writer.close()
        sandbox.cleanup(remove_scratch=False)
    if c.auto_remove:
        containers.remove(root, cdir, remove_volumes=True)  # nobody will read an exit record
    else:
        _record_exit(cdir, status)
    return status


def _tee(writer: logfile.LogWriter | None, stream: int, fd: int | None) -> Callable[[bytes], None]:
    to_fd = writer_to(fd) if fd is not None else None

    def write(data: bytes) -> None:
        if to_fd is not None:
            to_fd(data)
        if writer is not None:
            writer.write(stream, data)

    return write


def _running_fields(pid: int) -> dict[str, object]:
    me = os.getpid()
    return {
        "status": state.RUNNING,
        "pid": pid,
        "pid_start": state.process_start_time(pid) or 0,
        "supervisor_pid": me,
        "supervisor_start": state.process_start_time(me) or 0,
        "exit_code": None,
        "oom_killed": False,
        "error": "",
        "started_at": state.now(),
        "finished_at": "",
    }


def _record_exit(cdir: Path, status: ExitStatus, *, error: str = "") -> None:
    try:
        state.update(
            cdir,
            status=state.EXITED,
            exit_code=status.code,
            oom_killed=status.oom_killed,
            error=error,
            finished_at=state.now(),
            cgroup=None,
        )
    except FileNotFoundError:
        pass  # removed meanwhile (rm -f)


def _raw_mode(fd: int) -> AbstractContextManager[None]:
    from runner import terminal

    return terminal.raw_mode(fd)


# -- detached ----------------------------------------------------------------------------------


def spawn(root: Path, cdir: Path) -> None:
    """Start the container under a detached supervisor; return once it runs. Raises RuntimeError_
    (with Docker's exit status) if it could not start."""
    r, w = os.pipe2(os.O_CLOEXEC)
    first = os.fork()
    if first == 0:  # pragma: no cover - the intermediate child
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                _supervise(root, cdir, w)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(first, 0)
    with os.fdopen(r, "rb") as f:
        message = f.read()
    if message == b"ok":
        return
    try:
        report = json.loads(message)
        error = RuntimeError_(report["error"])
        error.exit_code = int(report.get("code", 125))
    except (ValueError, KeyError):
        error = RuntimeError_("the container's supervisor died before the container started")
    raise error


def _supervise(root: Path, cdir: Path, report_fd: int) -> None:  # pragma: no cover - the supervisor
    """The detached supervisor's body (never returns)."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        close_fds([report_fd])
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)
        os.chdir("/")

        def ready() -> None:
            os.write(report_fd, b"ok")
            os.close(report_fd)

        try:
            hold(root, cdir, Attach(terminal=False, log=True), ready=ready)
        except PybuildError as e:
            _report(report_fd, e.message, e.exit_code)
        except BaseException as e:  # noqa: BLE001 - the supervisor must report, never crash silently
            _report(report_fd, f"internal error: {type(e).__name__}: {e}", 125)
    finally:
        os._exit(0)


def _report(fd: int, message: str, code: int) -> None:
    try:
        os.write(fd, json.dumps({"error": message, "code": code}).encode())
    except OSError:
        pass  # already reported "ok": the error is in the record
