"""`--init`: a small PID 1 that starts the command as its child, forwards signals to it, reaps
every orphan, and exits with the command's status (128+N if a signal N killed it), as tini does.

It is the container's PID 1 process itself (already inside the container's root), so it needs no
binary in the image. It runs as root with the container's capability set and no_new_privs; the
command gets the requested user.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import NoReturn

from runner import capabilities
from runner import namespaces as ns
from runner.process import become_and_exec, close_fds, exit_reporting
from runner.users import ExecUser

# tini forwards everything but the synchronous faults and the job-control signals a tty sends.
_NOT_FORWARDED = {
    signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGFPE, signal.SIGILL, signal.SIGSEGV,
    signal.SIGBUS, signal.SIGABRT, signal.SIGTRAP, signal.SIGSYS, signal.SIGTTIN, signal.SIGTTOU, signal.SIGTSTP,
}


def _isolate_in_own_process_group() -> None:
    """As tini's isolate_child: the command leads its own process group and, with a terminal, is
    its foreground group, so keyboard signals reach it once (not also via the init)."""
    os.setpgid(0, 0)
    if os.isatty(0):
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(0, os.getpgrp())
        except OSError:
            pass


def run_init(argv: Sequence[str], env: Sequence[str], cwd: str, user: ExecUser, keep_caps: int, err_w: int) -> NoReturn:
    """Become the reaping init. Never returns."""
    child = os.fork()
    if child == 0:  # pragma: no cover - the command
        _isolate_in_own_process_group()
        exit_reporting(err_w, lambda: become_and_exec(argv, env, cwd, user, keep_caps, [err_w]))
    os.close(err_w)
    ns.prctl(ns.PR_SET_NO_NEW_PRIVS, 1)
    capabilities.drop_bounding(keep_caps)
    capabilities.set_process_capabilities(keep_caps, root=True)  # the init itself stays root
    close_fds([])
    os.chdir("/")

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(child, sig)
        except ProcessLookupError:
            pass

    for sig in signal.valid_signals():
        if isinstance(sig, signal.Signals) and sig not in _NOT_FORWARDED:
            try:
                signal.signal(sig, forward)
            except (OSError, ValueError):
                pass
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            os._exit(code)
