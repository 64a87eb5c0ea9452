"""Acting on a running container from another process: stop, kill, pause, unpause, and waiting
until its exit is on record.

Signals go through a pidfd opened on the recorded PID 1 and checked against its recorded start
time, so a pid reused by an unrelated process is never signalled. Waiting for a process that is
not our child is done by polling its pidfd (readable when it exits).
"""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

from pybuild.errors import RuntimeError_
from runner import state
from runner.containers import signal_number
from runner.state import ContainerState

_POLL = 0.005


def open_pidfd(pid: int, start: int) -> int | None:
    """A pidfd for the process `pid` that started at `start`, or None if it is gone."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None
    if state.process_start_time(pid) != start:
        os.close(fd)
        return None
    return fd


def wait_pidfd(fd: int, timeout: float | None) -> bool:
    """True if the process exited within `timeout` seconds (None: wait as long as it takes)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def send_signal(s: ContainerState, sig: int) -> bool:
    """Send `sig` to the container's PID 1; False if it is not running."""
    fd = open_pidfd(s.pid, s.pid_start)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def kill(cdir: Path, sig: int) -> None:
    """`kill -s SIG`: signal PID 1 (a paused container gets it when thawed). RuntimeError_ if the
    container is not running."""
    s = state.observed(state.load(cdir))
    if s.status not in (state.RUNNING, state.PAUSED) or not send_signal(s, sig):
        raise RuntimeError_(f"cannot kill container {s.name}: container {s.short_id} is not running")
    if sig == signal.SIGKILL:
        wait_recorded(cdir)


def stop(cdir: Path, timeout: float | None = None) -> None:
    """The image's StopSignal (default SIGTERM) to PID 1, then SIGKILL to every process after
    `timeout` seconds (default 10; negative: no SIGKILL, wait as long as it takes, as Docker's
    -1); returns once the exit is on record. Idempotent."""
    s = state.observed(state.load(cdir))
    if s.status not in (state.RUNNING, state.PAUSED):
        return
    grace = 10.0 if timeout is None else (None if timeout < 0 else timeout)
    fd = open_pidfd(s.pid, s.pid_start)
    if fd is not None:
        try:
            sig = signal_number(s.config.stop_signal)
            try:
                signal.pidfd_send_signal(fd, sig)
            except ProcessLookupError:
                pass
            cg = s.get_cgroup()
            if s.status == state.PAUSED and cg is not None:
                cg.thaw()  # a frozen process cannot act on the signal
            if not wait_pidfd(fd, grace):
                if cg is not None:
                    cg.kill_all(signal.SIGKILL)
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_pidfd(fd, 10.0)
        finally:
            os.close(fd)
    wait_recorded(cdir)


def wait_recorded(cdir: Path, timeout: float = 10.0) -> ContainerState | None:
    """Wait until the container's exit is on record (its supervisor writes it). If the supervisor
    is gone, record what is known ourselves. The final state, or None if the container was removed
    meanwhile (the normal end of a `--rm` container, whose supervisor removes it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = state.load(cdir)
        except FileNotFoundError:
            return None
        if s.status == state.EXITED or s.status == state.CREATED:
            return s
        supervisor_alive = state.is_alive(s.supervisor_pid, s.supervisor_start)
        if not supervisor_alive and not state.is_alive(s.pid, s.pid_start):
            return _record_lost_exit(cdir)
        if time.monotonic() > deadline:
            return state.observed(s)
        time.sleep(_POLL)


def _record_lost_exit(cdir: Path) -> ContainerState:
    """The supervisor died without recording an exit: write down the truth (exit unknown) and
    remove the cgroup it left."""
    with state.locked(cdir):
        s = state.load(cdir)
        if s.status == state.EXITED:
            return s
        seen = state.observed(s)
        cg = s.get_cgroup()
        if cg is not None:
            cg.remove()
        from dataclasses import replace

        final = replace(seen, finished_at=state.now(), cgroup=None)
        state.save(cdir, final)
        return final


def pause(cdir: Path) -> None:
    s = state.observed(state.load(cdir))
    if s.status == state.PAUSED:
        raise RuntimeError_(f"container {s.short_id} is already paused")
    cg = s.get_cgroup()
    if s.status != state.RUNNING or cg is None:
        raise RuntimeError_(f"container {s.short_id} is not running")
    cg.freeze()


def unpause(cdir: Path) -> None:
    s = state.observed(state.load(cdir))
    cg = s.get_cgroup()
    if s.status != state.PAUSED or cg is None:
        raise RuntimeError_(f"container {s.short_id} is not paused")
    cg.thaw()
