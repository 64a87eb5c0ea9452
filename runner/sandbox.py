"""One process tree in fresh namespaces over an overlay root: the sandbox every RUN step and
every container uses.

A `Sandbox` owns a scratch directory (a container's own dir, or a temporary one beside the upper
dir): the init layer, the overlay work dir, the merged mount point and the /etc files. `prepare`
writes those and creates the cgroup; `start` launches PID 1 (see runner/launch.py) which:
joins the cgroup; unshares mount, UTS, IPC, cgroup (and for `--network none` network) namespaces
(its shim already unshared the PID namespace); brings `lo` up; sets the hostname; mounts the root
(runner/rootfs.py) and pivots into it; sets up stdio; then becomes the command (or the `--init`).

The overlay and every other mount exist only in the container's mount namespace, so they vanish
with its last process: nothing is left mounted on the host even if pybuild itself is killed.
`cleanup` removes the cgroup and the scratch state but never touches the upper dir, which then
holds exactly the container's changes (placeholders live in the init layer), ready to commit.

`run_sandbox` is the whole cycle in one call, for the builder.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pybuild.errors import RuntimeError_

# Everything the child uses is imported here, before any fork: a forked child of a threaded
# caller must not need a lock another thread held at fork time.
from runner import capabilities, cgroups, initlayer, network, process, rootfs, users
from runner import namespaces as ns
from runner.init import run_init
from runner.launch import ChildContext, Launched, launch
from runner.mounts import make_temp_dir, remove_tree
from runner.rootfs import ALWAYS_NEEDED, RootfsPlan
from runner.spec import ExitStatus, SandboxSpec
from runner.streams import Relay, writer_to

_NEW_NAMESPACES = ns.CLONE_NEWNS | ns.CLONE_NEWUTS | ns.CLONE_NEWIPC | ns.CLONE_NEWCGROUP


@dataclass(frozen=True)
class ScratchDirs:
    base: Path

    @property
    def init(self) -> Path:
        return self.base / "init"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def merged(self) -> Path:
        return self.base / "merged"

    def etc(self, name: str) -> Path:
        return self.base / name


class Sandbox:
    """The sandbox of one process tree; see the module docstring for the life cycle."""

    def __init__(self, spec: SandboxSpec, scratch: Path, *, cgroup_name: str | None = None) -> None:
        if spec.network not in ("none", "host"):
            raise RuntimeError_(f"network mode {spec.network!r} is not supported (none or host)")
        self.spec = spec
        self.dirs = ScratchDirs(scratch)
        self.cgroup_name = cgroup_name or f"{cgroups.STEP_PREFIX}{os.urandom(8).hex()}"
        self.cgroup: cgroups.Cgroup | None = None
        self.plan: RootfsPlan | None = None
        self.launched: Launched | None = None

    # -- before -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Write the scratch state and create the cgroup. Idempotent; undone by `cleanup`."""
        spec, dirs = self.spec, self.dirs
        dirs.base.mkdir(parents=True, exist_ok=True)
        for d in (dirs.init, dirs.work):
            remove_tree(d)
            d.mkdir()
        dirs.merged.mkdir(exist_ok=True)
        files = {
            "hosts": network.hosts_file(spec.network, spec.hostname, network.read_host_file("/etc/hosts")) if spec.etc_hosts is None else spec.etc_hosts,
            "hostname": network.hostname_file(spec.hostname),
            "resolv.conf": network.resolv_file(network.read_host_file("/etc/resolv.conf")) if spec.resolv_conf is None else spec.resolv_conf,
        }
        for name, text in files.items():
            dirs.etc(name).write_text(text)
        needed = [initlayer.Placeholder(path, is_dir) for path, is_dir in ALWAYS_NEEDED]
        for m in spec.mounts:
            needed.append(initlayer.Placeholder(m.destination, m.kind == "tmpfs" or os.path.isdir(m.source)))
        initlayer.build(dirs.init, [spec.upper, *spec.lowers], needed)
        mounts = tuple(sorted(spec.mounts, key=lambda m: len(Path(m.destination).parts)))
        self.plan = RootfsPlan(
            merged=str(dirs.merged),
            lowers=(str(dirs.init), *map(str, spec.lowers)),
            upper=str(spec.upper),
            work=str(dirs.work),
            etc_files=tuple((str(dirs.etc(n)), f"/etc/{n}") for n in files),
            mounts=mounts,
        )
        if self.cgroup is None:
            self.cgroup = cgroups.create(self.cgroup_name, spec.limits)

    # -- during -------------------------------------------------------------------------------

    def start(
        self,
        *,
        stdin: int,
        stdout: int,
        stderr: int,
        winsize: tuple[int, int] | None = None,
        on_pid: Callable[[int], None] | None = None,
    ) -> Launched:
        """Launch PID 1 (after `prepare`). Returns once the command has exec'd; raises
        RuntimeError_ with Docker's status (125/126/127) if it could not."""
        if self.plan is None or self.cgroup is None:
            self.prepare()
        assert self.plan is not None and self.cgroup is not None
        spec, plan, cgroup = self.spec, self.plan, self.cgroup

        def prepare_shim() -> None:
            ns.unshare(ns.CLONE_NEWPID)

        def child_main(ctx: ChildContext) -> None:
            _container_main(spec, plan, cgroup, ctx)

        self.launched = launch(
            prepare_shim, child_main, stdin=stdin, stdout=stdout, stderr=stderr, tty=spec.process.tty, winsize=winsize,
            on_pid=on_pid,
        )
        return self.launched

    def wait(self, relay: Relay | None = None) -> ExitStatus:
        """Wait for PID 1 to exit (relaying output meanwhile); how it ended."""
        assert self.launched is not None and self.cgroup is not None
        status = self.launched.wait(relay)
        return ExitStatus.from_wait_status(status, oom_killed=self.cgroup.oom_killed())

    # -- after --------------------------------------------------------------------------------

    def cleanup(self, *, remove_scratch: bool = True) -> None:
        """Kill anything left, remove the cgroup and the scratch state (never the upper dir).
        Idempotent."""
        if self.launched is not None:
            self.launched.abort()
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if remove_scratch:
            remove_tree(self.dirs.base)
        else:
            for d in (self.dirs.init, self.dirs.work):
                remove_tree(d)


def _container_main(spec: SandboxSpec, plan: RootfsPlan, cgroup: cgroups.Cgroup, ctx: ChildContext) -> None:
    """PID 1 of the new PID namespace: everything between fork and execve."""
    process.reset_signals()
    ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()
    cgroup.join()
    ns.unshare(_NEW_NAMESPACES | (ns.CLONE_NEWNET if spec.network == "none" else 0))
    if spec.network == "none":
        network.bring_up_loopback()
    ns.sethostname(spec.hostname)
    rootfs.enter_rootfs(plan)
    ctx.setup_stdio(console=True)
    user = users.lookup(Path("/"), spec.process.user)
    env = process.container_env(spec.process.env, hostname=spec.hostname, home=user.home, tty=spec.process.tty)
    keep = capabilities.mask(spec.capabilities)
    if cgroup.version == 2:
        # no devices controller to stop a mknod'ed disk from being opened: no mknod at all
        keep &= ~(1 << capabilities.CAPABILITY_NUMBERS["MKNOD"])
    if spec.init:
        run_init(spec.process.argv, env, spec.process.cwd, user, keep, ctx.err_w)
    process.become_and_exec(spec.process.argv, env, spec.process.cwd, user, keep, [ctx.err_w])


OutputSink = Callable[[str, bytes], None]


def run_sandbox(
    spec: SandboxSpec,
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    on_output: OutputSink | None = None,
    scratch: Path | None = None,
) -> ExitStatus:
    """Run one process tree in the sandbox and return how it ended (the builder's RUN step).

    stdio: descriptors to hand the process (None: /dev/null), or `on_output(stream, data)`
    ("stdout"/"stderr") called with the output as it arrives (then `stdout`/`stderr` must be None).
    `scratch`: a directory to keep the sandbox's state in (default: a temporary one beside the
    upper dir, removed afterwards). On return, and on any exception, nothing of the run is left:
    no process, mount or cgroup; the upper dir holds exactly the process tree's changes.
    Raises RuntimeError_ (exit_code 125/126/127) if the command could not be started.
    """
    own_scratch = scratch is None
    base = make_temp_dir(spec.upper.parent, ".run-") if scratch is None else scratch
    sandbox = Sandbox(spec, base)
    opened: list[int] = []
    try:
        sandbox.prepare()
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        opened.append(null)
        relay = Relay()
        child_fds = []
        out_fd, err_fd = stdout, stderr
        if on_output is not None:
            fds: dict[str, int] = {}
            for stream in ("stdout", "stderr"):
                r, w = os.pipe2(os.O_CLOEXEC)
                opened += [r, w]
                child_fds.append(w)
                fds[stream] = w
                relay.add_source(r, _sink(on_output, stream))
            out_fd, err_fd = fds["stdout"], fds["stderr"]
        launched = sandbox.start(
            stdin=null if stdin is None else stdin,
            stdout=null if out_fd is None else out_fd,
            stderr=null if err_fd is None else err_fd,
        )
        for fd in child_fds:
            os.close(fd)
            opened.remove(fd)
        if launched.master is not None:
            relay.add_source(launched.master, _sink(on_output, "stdout") if on_output else writer_to(out_fd or 1))
        return sandbox.wait(relay)
    finally:
        for fd in opened:
            os.close(fd)
        sandbox.cleanup(remove_scratch=own_scratch)


def _sink(callback: OutputSink, stream: str) -> Callable[[bytes], None]:
    return lambda data: callback(stream, data)
