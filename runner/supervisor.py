"""Holding a running container: the one piece of code that starts a container, records it as
running, relays its output, records how it ended, and cleans up.

`hold` always runs in a supervisor, a process of its own session that the container's shim and
PID 1 die with (PR_SET_PDEATHSIG), so the record can always be made true: either the supervisor
records the exit, or it is dead and so is the container (runner.state.observed says so).
- Detached (`run -d`, `start`; `spawn`): double-forked from the CLI, with no terminal and none of
  the CLI's descriptors; the output goes to the log.
- Foreground (`run`; `run_attached`): a child of the CLI that uses the CLI's stdio, while the CLI
  waits for it and passes signals on. If the CLI is killed, the supervisor lets go of the CLI's
  terminal and holds the container on, as Docker's daemon or podman's conmon does: killing the
  client is not stopping the container.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pybuild.errors import PybuildError, RuntimeError_
from runner import containers, logfile, state
from runner.launch import FORWARDED_SIGNALS, proxy_signals
from runner.process import close_fds, stdio_to_devnull
from runner.sandbox import Sandbox
from runner.spec import ExitStatus
from runner.streams import Relay, StopReading, write_all

if TYPE_CHECKING:
    from runner.terminal import raw_mode


@dataclass(frozen=True)
class Attach:
    """Where a held container's stdio goes.

    `terminal`: this process's fds 0/1/2 are the CLI's (foreground); otherwise the output goes to
    the log only (detached). `log`: whether to keep a log (not for a foreground `--rm`, which is
    removed when it ends, so that path stays as direct as possible). `lifeline`: with `terminal`,
    a descriptor whose other end only the CLI holds; when it hangs up (the CLI is gone) the
    terminal is let go (raw mode undone, no more input or output through it).
    """

    terminal: bool
    log: bool
    lifeline: int | None = None


@dataclass
class _Terminal:
    """Whether the CLI's terminal is still ours to use (cleared when the CLI goes away)."""

    live: bool


def hold(root: Path, cdir: Path, attach: Attach, *, ready: Callable[[], None] | None = None) -> ExitStatus:
    """Start the container in `cdir`, hold it until it exits, record everything; its exit status.

    Raises RuntimeError_ (exit_code 125/126/127) if it could not start; the record then says
    created (never started), with that code and the error, as Docker's does.
    """
    record = state.load(cdir)
    c = record.config
    sandbox = Sandbox(containers.sandbox_spec(cdir, record), cdir, cgroup_name=record.id)
    opened: list[int] = []
    relay = Relay()
    writer = logfile.LogWriter(cdir / "log") if attach.log else None
    tty_in = attach.terminal and c.tty and c.open_stdin
    term = _Terminal(live=attach.terminal)
    raw = _raw_mode(0) if tty_in else None
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
                opened.append(w)
                child_ends.append(w)
                relay.add_source(r, _tee(writer, stream, fd_out if attach.terminal else None, term), close=_closer(r))
            stdout, stderr = child_ends
        winsize = _winsize(0) if attach.terminal and c.tty else None
        cgroup = sandbox.cgroup.to_json()

        def record_running(pid: int) -> None:  # overlaps the container's own setup
            state.update(cdir, cgroup=cgroup, **_running_fields(pid))

        launched = sandbox.start(stdin=stdin, stdout=stdout, stderr=stderr, winsize=winsize, on_pid=record_running)
        for fd in child_ends:
            os.close(fd)
            opened.remove(fd)
        if launched.master is not None:
            relay.add_source(launched.master, _tee(writer, logfile.STDOUT, 1 if attach.terminal else None, term), close=launched.close_master)
            if tty_in:
                relay.add_forward(0, launched.master)
        if ready is not None:
            ready()
        if attach.terminal:
            proxy_signals(launched)
        else:  # a detached supervisor asked to end passes that on, and still records the exit
            signal.signal(signal.SIGTERM, lambda _s, _f: launched.signal(signal.SIGTERM))
        if attach.lifeline is not None:

            def let_go_of_the_terminal() -> None:
                term.live = False
                relay.stop_forwards()
                if raw is not None:
                    raw.restore()
                stdio_to_devnull()  # the CLI's pipes end for their readers, as the CLI has

            relay.add_watch(attach.lifeline, let_go_of_the_terminal)
        with raw if raw is not None else nullcontext():
            status = sandbox.wait(relay)
    except RuntimeError_ as e:
        if launched is None:  # it never started
            _record_exit(cdir, ExitStatus(e.exit_code), error=e.message, started=False)
        raise
    except BaseException:
        if launched is not None:  # interrupted while holding it: it is killed, say so
            launched.abort()
            _record_exit(cdir, ExitStatus.from_wait_status(launched.wait()), error="killed: pybuild was interrupted")
        raise
    finally:
        relay.close_all()
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


def _raw_mode(fd: int) -> raw_mode:
    from runner.terminal import raw_mode  # only for -t: the terminal module imports socket

    return raw_mode(fd)


def _winsize(fd: int) -> tuple[int, int] | None:
    from runner.terminal import get_winsize

    return get_winsize(fd)


def _closer(fd: int) -> Callable[[], None]:
    return lambda: os.close(fd)


def _tee(writer: logfile.LogWriter | None, stream: int, fd: int | None, term: _Terminal) -> Callable[[bytes], None]:
    """Output of one stream: into the log, and to the CLI's `fd` while the CLI is there. A closed
    reader there (`| head`) stops the stream (StopReading), as in a shell pipeline."""

    def write(data: bytes) -> None:
        if writer is not None:
            writer.write(stream, data)
        if fd is not None and term.live:
            try:
                write_all(fd, data)
            except BrokenPipeError:
                raise StopReading from None

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


def _record_exit(cdir: Path, status: ExitStatus, *, error: str = "", started: bool = True) -> None:
    try:
        state.update(
            cdir,
            status=state.EXITED if started else state.CREATED,
            exit_code=status.code,
            oom_killed=status.oom_killed,
            error=error,
            finished_at=state.now() if started else "",
            cgroup=None,
        )
    except FileNotFoundError:
        pass  # removed meanwhile (rm -f)


# -- foreground --------------------------------------------------------------------------------


def run_attached(root: Path, cdir: Path, *, log: bool) -> ExitStatus:
    """Run the container in `cdir` in the foreground; its exit status, once its output is written
    and (with `--rm`) it is removed. Raises RuntimeError_ (Docker's status) if it could not start.

    The supervisor is this process's child, in a session of its own, with this process's stdio;
    this process only waits and passes the signals it gets on (to PID 1, as docker's sig-proxy;
    SIGWINCH resizes the pty). Killed, it leaves the container running, held and logged by the
    supervisor (`ps` says so; `stop`, `logs` and `rm` work on it).
    """
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    life_r, life_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the supervisor
        try:
            os.close(report_r)
            os.close(life_w)
            os.setsid()  # no job-control signals, no hang-up from the CLI's terminal
            close_fds([report_w, life_r])
            for sig in FORWARDED_SIGNALS:  # passed on once the container runs (proxy_signals)
                signal.signal(sig, signal.SIG_IGN)
            os.chdir("/")
            status = hold(root, cdir, Attach(terminal=True, log=log, lifeline=life_r))
            _send(report_w, {"code": status.code, "signal": status.signal, "oom_killed": status.oom_killed})
        except BaseException as e:  # noqa: BLE001 - report, never return into the CLI's stack
            _send(report_w, _error_report(e))
        finally:
            os._exit(0)
    os.close(report_w)
    os.close(life_r)
    passed_on = (*FORWARDED_SIGNALS, signal.SIGWINCH)
    previous = {sig: signal.signal(sig, lambda s, _f: os.kill(pid, s)) for sig in passed_on}
    try:
        with os.fdopen(report_r, "rb") as f:
            message = f.read()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.waitpid(pid, 0)
        os.close(life_w)
    report = _parse_report(message, f"the container's supervisor (pid {pid}) died; the container died with it")
    return ExitStatus(int(report["code"]), report.get("signal"), bool(report.get("oom_killed")))


def _send(fd: int, report: dict[str, object]) -> None:
    try:
        os.write(fd, json.dumps(report).encode())
    except OSError:
        pass  # the CLI is gone (or a detached one was told "ok"): the record says it all


def _error_report(e: BaseException) -> dict[str, object]:
    if isinstance(e, PybuildError):
        return {"error": e.message, "code": e.exit_code}
    return {"error": f"internal error: {type(e).__name__}: {e}", "code": 125}


def _parse_report(message: bytes, lost: str) -> dict[str, Any]:
    """A supervisor's report; raises RuntimeError_ (with its exit status) for an error in it, or
    `lost` if there is none."""
    try:
        report = json.loads(message)
    except ValueError:
        error = RuntimeError_(lost)
        error.exit_code = 125
        raise error from None
    if "error" in report:
        error = RuntimeError_(str(report["error"]))
        error.exit_code = int(report.get("code", 125))
        raise error
    return dict(report)


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
    if message != b"ok":
        _parse_report(message, "the container's supervisor died before the container started")


def _supervise(root: Path, cdir: Path, report_fd: int) -> None:  # pragma: no cover - the supervisor
    """The detached supervisor's body (never returns)."""
    try:
        stdio_to_devnull()
        close_fds([report_fd])
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)
        os.chdir("/")
        reported = []

        def ready() -> None:
            os.write(report_fd, b"ok")
            os.close(report_fd)
            reported.append(True)

        try:
            hold(root, cdir, Attach(terminal=False, log=True), ready=ready)
        except BaseException as e:  # noqa: BLE001 - the supervisor must report, never crash silently
            if not reported:  # (afterwards the record says what happened)
                _send(report_fd, _error_report(e))
    finally:
        os._exit(0)
