"""Becoming the container's process: credentials, capabilities, file descriptors, working
directory, environment, signals, then execve.

Runs in a forked child that is already inside the container's namespaces and root. The order is
the point (runc's `finalizeNamespace`):
1. close every descriptor but stdio and the error pipe, BEFORE touching the working directory: a
   leaked directory fd plus WORKDIR `/proc/self/fd/N` is runc CVE-2024-21626;
2. create the working directory if missing (as root, mode 0755, as Docker does);
3. no_new_privs, bounding set, groups, gid, uid, then the capability sets;
4. chdir, and check that the working directory is inside the root;
5. default signal dispositions and an empty signal mask (Python ignores SIGPIPE and SIGXFSZ);
6. execve through the container's PATH.
A failure before execve is reported on the error pipe (see `report_failure`) with the status
Docker would give: 125 for setup, 126 for a command that cannot be executed, 127 for one that
does not exist.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from collections.abc import Callable, Sequence
from typing import NoReturn

from pybuild.errors import PybuildError
from runner import capabilities
from runner import namespaces as ns
from runner.spec import DEFAULT_PATH
from runner.users import ExecUser

# Signals never given default dispositions back (they cannot be changed).
_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}


class ChildFailure(Exception):
    """A failure inside the container's setup, with the exit status the caller should report."""

    def __init__(self, message: str, code: int = 125) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def report_failure(fd: int, message: str, code: int) -> None:
    """Write one failure record to the error pipe (the parent reads it when the pipe closes)."""
    data = json.dumps({"error": message, "code": code}).encode()
    try:
        os.write(fd, data)
    except OSError:
        pass


def read_failure(fd: int) -> ChildFailure | None:
    """Read the error pipe to EOF: None if the child exec'd (the pipe closed on exec, empty)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
        if not chunk:
            break
        chunks.append(chunk)
    if not chunks:
        return None
    try:
        record = json.loads(b"".join(chunks))
        return ChildFailure(str(record["error"]), int(record["code"]))
    except (ValueError, KeyError, TypeError):
        return ChildFailure(b"".join(chunks).decode(errors="replace"))


def exit_reporting(err_w: int, body: Callable[[], None]) -> NoReturn:
    """Run `body` (which normally ends in execve) in a forked child; report any failure on the
    error pipe with its exit status, and exit. Never returns into the caller's stack."""
    code = 125
    try:
        body()
    except ChildFailure as e:
        code = e.code
        report_failure(err_w, e.message, e.code)
    except PybuildError as e:
        report_failure(err_w, e.message, 125)
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        report_failure(err_w, f"{e.strerror or e}{where}", 125)
    except BaseException as e:  # noqa: BLE001 - anything else is still a failure to report
        report_failure(err_w, f"internal error: {type(e).__name__}: {e}", 125)
    finally:
        os._exit(code)


def container_env(env: Sequence[str], *, hostname: str, home: str, tty: bool) -> list[str]:
    """The environment the process gets: the given K=V list plus Docker's defaults for PATH,
    HOSTNAME, HOME and (with a terminal) TERM, where not given. Later duplicates win. Pure."""
    merged: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        merged[key] = value if sep else os.environ.get(key, "")
    defaults = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": home}
    if tty:
        defaults["TERM"] = "xterm"
    for key, value in defaults.items():
        merged.setdefault(key, value)
    ordered = ["PATH"] + [k for k in merged if k != "PATH"]
    return [f"{k}={merged[k]}" for k in ordered]


def reset_signals() -> None:
    for sig in signal.valid_signals():
        if sig in _UNCATCHABLE or not isinstance(sig, signal.Signals):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def close_fds(keep: Sequence[int]) -> None:
    """Close every descriptor above 2 except `keep` (uses close_range(2) where available)."""
    keep_sorted = sorted(k for k in keep if k > 2)
    low = 3
    for fd in keep_sorted:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 2**31 - 1)


def stdio_to_devnull() -> None:
    """Point fds 0, 1 and 2 at /dev/null: let go of a terminal or pipes without leaving the
    numbers free for the next open to take."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def prepare_cwd(cwd: str) -> None:
    """Create the working directory (as root, 0755) if it does not exist."""
    if not cwd.startswith("/"):
        raise ChildFailure(f"the working directory {cwd!r} is invalid, it needs to be an absolute path")
    try:
        os.makedirs(cwd, 0o755, exist_ok=True)
    except OSError as e:
        raise ChildFailure(f"cannot create the working directory {cwd}: {e.strerror}") from e


def drop_privileges(user: ExecUser, keep_caps: int) -> None:
    """no_new_privs, bounding set, credentials, capability sets, in that order."""
    ns.prctl(ns.PR_SET_NO_NEW_PRIVS, 1)
    capabilities.drop_bounding(keep_caps)
    os.setgroups(list(user.groups))
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    # a credential change clears the parent-death signal; the container must still die with its
    # supervisor
    ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
    capabilities.set_process_capabilities(keep_caps, root=user.is_root)


def enter_cwd(cwd: str) -> None:
    """chdir, then prove the result is inside the root (CVE-2024-21626)."""
    try:
        os.chdir(cwd)
    except OSError as e:
        raise ChildFailure(f"cannot use {cwd} as the working directory: {e.strerror}") from e
    try:
        real = os.getcwd()
    except OSError as e:
        raise ChildFailure(f"the working directory {cwd} is outside the container") from e
    if not real.startswith("/"):
        raise ChildFailure(f"the working directory {cwd} is outside the container")


def execute(argv: Sequence[str], env: Sequence[str]) -> None:
    """execve argv[0] (searched in the env's PATH when it has no slash). Never returns; raises
    ChildFailure with 127 (not found) or 126 (not executable)."""
    env_map = dict(e.split("=", 1) for e in env if "=" in e)
    try:
        os.execvpe(argv[0], list(argv), env_map)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            if "/" in argv[0]:
                raise ChildFailure(f'exec: "{argv[0]}": no such file or directory', 127) from e
            raise ChildFailure(f'exec: "{argv[0]}": executable file not found in $PATH', 127) from e
        raise ChildFailure(f'exec: "{argv[0]}": {e.strerror.lower() if e.strerror else e}', 126) from e


def become_and_exec(
    argv: Sequence[str],
    env: Sequence[str],
    cwd: str,
    user: ExecUser,
    keep_caps: int,
    keep_fds: Sequence[int],
) -> None:
    """Steps 1-6 of the module docstring. Never returns."""
    close_fds(keep_fds)
    prepare_cwd(cwd)
    drop_privileges(user, keep_caps)
    enter_cwd(cwd)
    reset_signals()
    execute(argv, env)
