"""`exec`: one more process inside a running container.

The shim joins the container's namespaces (from PID 1's /proc/PID/ns files, opened while PID 1's
start time still matches the record) and forks the new process, which joins the container's
cgroup, takes the container's user, environment and capabilities, and execs. It is then a
process of the container like any other: killed with it, frozen with it, seen by `ps` inside.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pybuild.errors import RuntimeError_
from runner import capabilities, namespaces, process, state, users
from runner.launch import ChildContext, Launched, launch
from runner.spec import ProcessSpec
from runner.state import ContainerState

# Join order: the cgroup namespace while /sys/fs/cgroup paths still mean the host's, the mount
# namespace last (after it, host paths mean nothing).
_NAMESPACES = (
    ("cgroup", namespaces.CLONE_NEWCGROUP),
    ("ipc", namespaces.CLONE_NEWIPC),
    ("uts", namespaces.CLONE_NEWUTS),
    ("net", namespaces.CLONE_NEWNET),
    ("pid", namespaces.CLONE_NEWPID),
    ("mnt", namespaces.CLONE_NEWNS),
)


def exec_in(
    s: ContainerState,
    proc: ProcessSpec,
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    winsize: tuple[int, int] | None = None,
) -> Launched:
    """Start `proc` in the running container `s`. RuntimeError_ if it is not running (or is
    paused), or with Docker's 126/127 if the command cannot be run."""
    s = state.observed(s)
    if s.status == state.PAUSED:
        raise RuntimeError_(f"container {s.short_id} is paused, unpause the container before exec")
    if s.status != state.RUNNING:
        raise RuntimeError_(f"container {s.short_id} is not running")
    cgroup = s.get_cgroup()
    cgroup_procs: list[int] = []
    keep_caps = capabilities.mask(s.config.capabilities)
    if cgroup is not None and cgroup.version == 2:
        keep_caps &= ~(1 << capabilities.CAPABILITY_NUMBERS["MKNOD"])

    def prepare_shim() -> None:
        fds = {name: os.open(f"/proc/{s.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name, _ in _NAMESPACES}
        root = os.open(f"/proc/{s.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if state.process_start_time(s.pid) != s.pid_start:
            raise RuntimeError_(f"container {s.short_id} is not running")
        if cgroup is not None:
            # "tasks" on v1: see Cgroup.join (the new process is single-threaded)
            name = "tasks" if cgroup.version == 1 else "cgroup.procs"
            for d in cgroup.dirs.values():
                cgroup_procs.append(os.open(Path(d) / name, os.O_WRONLY | os.O_CLOEXEC))
        for name, kind in _NAMESPACES:
            namespaces.setns(fds[name], kind)
            os.close(fds[name])
        # setns(CLONE_NEWNS) sets our root to the namespace's root mount, which is the container's
        # root only if pybuild itself was not in a chroot when the container started. PID 1's own
        # root is the container's root in every case.
        os.fchdir(root)
        os.chroot(".")
        os.chdir("/")
        os.close(root)

    def child_main(ctx: ChildContext) -> None:
        for fd in cgroup_procs:
            os.write(fd, b"0")
            os.close(fd)
        process.reset_signals()
        namespaces.prctl(namespaces.PR_SET_PDEATHSIG, signal.SIGKILL)
        os.setsid()
        ctx.setup_stdio()
        user = users.lookup(Path("/"), proc.user)
        env = process.container_env(proc.env, hostname=s.config.hostname, home=user.home, tty=proc.tty)
        process.become_and_exec(proc.argv, env, proc.cwd, user, keep_caps, [ctx.err_w])

    return launch(prepare_shim, child_main, stdin=stdin, stdout=stdout, stderr=stderr, tty=proc.tty, winsize=winsize)
