"""Control groups for one container: limits, membership, freezing, OOM detection, removal.

Two drivers behind one value, chosen at run time (DESIGN §5):
- v2 when /sys/fs/cgroup is a cgroup2 mount: one directory `/sys/fs/cgroup/pybuild/<name>` with
  the controllers enabled from the root down (the root is exempt from the "no internal
  processes" rule, so that is where a runtime can put its cgroups).
- v1 otherwise: one directory per controller hierarchy (memory, cpu, pids, freezer, devices),
  each `<hierarchy>/<our own cgroup there>/pybuild/<name>`. Nesting under the caller's cgroup keeps
  containers inside whatever accounting the caller is subject to.

A `Cgroup` is a plain value (paths only) so it can be stored in state.json and used by a later
process (`stop`, `pause`, `rm`). Every operation is idempotent: freezing a frozen group, removing
a removed one, are no-ops.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from layerstore.lazylog import Logger
from pybuild.errors import RuntimeError_

log = Logger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer", "devices")
V2_CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000
_POLL = 0.002
_KILL_FREEZE_TIMEOUT = 1.0

# runc's default device rules (libcontainer/specconv AllowedDevices) for the v1 devices controller:
# mknod of anything, use of only the standard character devices.
V1_DEVICE_RULES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",  # null
    "c 1:5 rwm",  # zero
    "c 1:7 rwm",  # full
    "c 1:8 rwm",  # random
    "c 1:9 rwm",  # urandom
    "c 5:0 rwm",  # tty
    "c 5:1 rwm",  # console
    "c 5:2 rwm",  # ptmx
    "c 136:* rwm",  # pts
)


@dataclass(frozen=True)
class Limits:
    """Resource limits; None means unlimited."""

    memory: int | None = None  # bytes
    cpus: float | None = None  # CPUs worth of time per period
    pids: int | None = None

    def to_json(self) -> dict[str, int | float | None]:
        return {"memory": self.memory, "cpus": self.cpus, "pids": self.pids}

    @classmethod
    def from_json(cls, data: dict[str, int | float | None] | None) -> Limits:
        data = data or {}
        mem, cpus, pids = data.get("memory"), data.get("cpus"), data.get("pids")
        return cls(int(mem) if mem is not None else None, float(cpus) if cpus is not None else None, int(pids) if pids is not None else None)


@dataclass(frozen=True)
class Cgroup:
    """The directories of one container's cgroup: {controller: dir} for v1, {"unified": dir} for v2."""

    version: int
    dirs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "dirs": dict(self.dirs)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Cgroup:
        dirs = data.get("dirs") or {}
        assert isinstance(dirs, dict)
        return cls(int(str(data.get("version", 1))), {str(k): str(v) for k, v in dirs.items()})

    def dir(self, controller: str) -> Path | None:
        key = "unified" if self.version == 2 else controller
        d = self.dirs.get(key)
        return Path(d) if d else None

    # -- membership --------------------------------------------------------------------------

    def join(self) -> None:
        """Move the calling process, which must be single-threaded (a freshly forked child), into
        this cgroup (every hierarchy).

        On v1 this writes "0" to `tasks`, not `cgroup.procs`: moving the current thread alone
        skips the global threadgroup rwsem whose write side waits for an RCU grace period (about
        10 ms per container start here); for a one-thread process it is the same move."""
        for d in self.dirs.values():
            _write(Path(d) / ("tasks" if self.version == 1 else "cgroup.procs"), "0")

    def join_pid(self, pid: int) -> None:
        for d in self.dirs.values():
            _write(Path(d) / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        """The processes in the group (host pids); empty if it does not exist."""
        found: set[int] = set()
        for d in self.dirs.values():
            try:
                text = (Path(d) / "cgroup.procs").read_text()
            except FileNotFoundError:
                continue
            found.update(int(x) for x in text.split())
        return sorted(found)

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs.values())

    # -- freezer -------------------------------------------------------------------------------

    def freeze(self, timeout: float = 10.0) -> None:
        """Freeze every process of the group; returns once the kernel reports it frozen."""
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 10.0) -> None:
        self._set_frozen(False, timeout)

    def is_frozen(self) -> bool:
        if self.version == 2:
            d = self.dir("unified")
            return d is not None and _read_keyed(d / "cgroup.events").get("frozen") == "1"
        d = self.dir("freezer")
        if d is None:
            return False
        try:
            return (d / "freezer.state").read_text().strip() == "FROZEN"
        except FileNotFoundError:
            return False

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        if self.version == 2:
            d = self.dir("unified")
            if d is None:
                raise RuntimeError_("no cgroup to freeze")
            _write(d / "cgroup.freeze", "1" if frozen else "0")
        else:
            d = self.dir("freezer")
            if d is None:
                raise RuntimeError_("the freezer cgroup controller is not available")
            _write(d / "freezer.state", "FROZEN" if frozen else "THAWED")
        deadline = time.monotonic() + timeout
        while self.is_frozen() != frozen:
            if time.monotonic() > deadline:
                raise RuntimeError_(f"cgroup {d} did not become {'frozen' if frozen else 'thawed'} within {timeout:g}s")
            time.sleep(_POLL)

    # -- OOM, kill, removal --------------------------------------------------------------------

    def oom_killed(self) -> bool:
        """True if the kernel's OOM killer killed a process of this group (v1 needs Linux 4.13)."""
        if self.version == 2:
            d = self.dir("unified")
            return d is not None and int(_read_keyed(d / "memory.events").get("oom_kill", "0")) > 0
        d = self.dir("memory")
        return d is not None and int(_read_keyed(d / "memory.oom_control").get("oom_kill", "0")) > 0

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to every process in the group, and to no other process. A group frozen
        before the call stays frozen (its processes act on the signal once thawed).

        v2's `cgroup.kill` (Linux 5.14) does it in the kernel. Otherwise the pids are read from
        `cgroup.procs` and signalled one by one with the group frozen meanwhile, as runc's
        signalAllProcesses does: a frozen process cannot exit, so no pid read can be freed and
        taken by an unrelated process before it is signalled (pid_max may be as low as 32768).
        Without a freezer, or with a task that cannot be frozen (uninterruptible sleep), the
        signals go out unfrozen."""
        d = self.dir("unified") if self.version == 2 else None
        if d is not None and sig == signal.SIGKILL and (d / "cgroup.kill").exists():
            _write(d / "cgroup.kill", "1")
            return
        if not self.pids():
            return
        was_frozen = self.is_frozen()
        try:
            if not was_frozen:
                self._set_frozen(True, _KILL_FREEZE_TIMEOUT)
        except RuntimeError_:
            pass
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if not was_frozen:
                try:
                    self._set_frozen(False, _KILL_FREEZE_TIMEOUT)
                except RuntimeError_:
                    pass  # removed meanwhile, or no freezer; `remove` thaws again

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what is left in the group and remove its directories. Idempotent."""
        deadline = time.monotonic() + timeout
        if self.pids():
            self.kill_all()
            if self.is_frozen():
                self.thaw()
        for d in self.dirs.values():
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise RuntimeError_(f"cannot remove cgroup {d}: {e.strerror}") from e
                    self.kill_all()
                    time.sleep(_POLL)
            _remove_if_unused(Path(d).parent)


STEP_PREFIX = "run-"  # the groups of build steps (Sandbox's default name), which no record names


def sweep_steps(min_age: float, *, dry_run: bool = False, hierarchies: Hierarchies | None = None) -> list[str]:
    """Remove the empty groups of build steps older than `min_age` seconds, and return their
    names. A step's group is removed by the build that made it; one whose build was killed
    (SIGKILL, a crash, the machine going down mid-step) stays, and, as no container record names
    it, only this finds it. A group with a process in it is left alone, whatever its age, and so
    is one that just appeared (its step may not have joined it yet)."""
    h = hierarchies or discover()
    parents = [h.unified / "pybuild"] if h.version == 2 and h.unified else [d / "pybuild" for d in h.v1.values()]
    now = time.time()
    swept: set[str] = set()
    for parent in parents:
        try:
            children = [c for c in parent.iterdir() if c.name.startswith(STEP_PREFIX) and c.is_dir()]
        except OSError:
            continue  # no group of ours in this hierarchy
        for child in children:
            try:
                if (child / "cgroup.procs").read_text().split() or now - child.stat().st_mtime < min_age:
                    continue
                if not dry_run:
                    os.rmdir(child)
            except OSError as e:  # gone meanwhile, or not ours to remove (not root)
                log.debug("step cgroup %s kept: %s", child, e.strerror)
                continue
            swept.add(child.name)
        if not dry_run:
            _remove_if_unused(parent)
    return sorted(swept)


def _remove_if_unused(parent: Path) -> None:
    """Remove our `pybuild` parent group once no container uses it, so nothing of ours stays in
    a hierarchy (a leftover child would keep the caller's own cgroup from being removed)."""
    if parent.name != "pybuild":
        return
    try:
        os.rmdir(parent)
    except OSError:
        pass  # another container still has a group there, or it is already gone


def _make_group(parent: Path, name: str) -> Path:
    """mkdir parent/name, retrying if a concurrent `_remove_if_unused` removes the parent."""
    for _ in range(100):
        try:
            parent.mkdir(exist_ok=True)
            (parent / name).mkdir(exist_ok=True)
            return parent / name
        except FileNotFoundError:
            continue
    raise RuntimeError_(f"cannot create cgroup {parent / name}")


def _write(path: Path, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise RuntimeError_(f"cgroup file {path} does not exist") from e
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise RuntimeError_(f"cannot write {value!r} to {path}: {e.strerror}") from e
    finally:
        os.close(fd)


def _read_keyed(path: Path) -> dict[str, str]:
    """A flat keyed file (`key value` lines), empty if missing."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        out[key] = value.strip()
    return out


# -- discovery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hierarchies:
    """Where the cgroup hierarchies are mounted and where the calling process sits in them."""

    version: int
    unified: Path | None  # v2 mount point
    v1: dict[str, Path]  # controller -> directory of our own cgroup in that hierarchy


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(root, mount point, fstype, super options) of every mount of this process."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            out.append((lf[3], lf[4], rf[0], rf[2] if len(rf) > 2 else ""))
    return out


def _own_cgroups() -> dict[str, str]:
    """controller (or "" for v2) -> our cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                out[c] = path
    return out


def discover() -> Hierarchies:
    """The cgroup layout of this machine, as the calling process sees it."""
    mounts = _mountinfo()
    for root, point, fstype, _ in mounts:
        if point == str(CGROUP_ROOT) and fstype == "cgroup2":
            return Hierarchies(2, CGROUP_ROOT, {})
    own = _own_cgroups()
    v1: dict[str, Path] = {}
    for root, point, fstype, options in mounts:
        if fstype != "cgroup":
            continue
        for opt in options.split(","):
            if opt in V1_CONTROLLERS and opt not in v1:
                rel = own.get(opt, "/")
                if root != "/" and rel.startswith(root):
                    rel = rel[len(root):]
                v1[opt] = Path(point, rel.lstrip("/"))
    return Hierarchies(1, None, v1)


def create(name: str, limits: Limits, *, hierarchies: Hierarchies | None = None) -> Cgroup:
    """Create the cgroup `name` with `limits` and return it. Raises RuntimeError_ (after removing
    what it made) if a limit cannot be applied."""
    h = hierarchies or discover()
    if h.version == 2:
        assert h.unified is not None
        cg = _create_v2(h.unified, name, limits)
    else:
        cg = _create_v1(h.v1, name, limits)
    return cg


def _create_v1(hierarchy: dict[str, Path], name: str, limits: Limits) -> Cgroup:
    for needed, wanted in (("memory", limits.memory), ("cpu", limits.cpus), ("pids", limits.pids)):
        if wanted is not None and needed not in hierarchy:
            raise RuntimeError_(f"the {needed} cgroup controller is not mounted; cannot apply the limit")
    dirs: dict[str, str] = {}
    try:
        for controller, base in hierarchy.items():
            dirs[controller] = str(_make_group(base / "pybuild", name))
        if "devices" in dirs:
            devices = Path(dirs["devices"])
            _write(devices / "devices.deny", "a")
            for rule in V1_DEVICE_RULES:
                _write(devices / "devices.allow", rule)
        if limits.memory is not None:
            mem = Path(dirs["memory"])
            _write(mem / "memory.limit_in_bytes", str(limits.memory))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                # Docker: --memory without --memory-swap allows as much swap again
                _write(mem / "memory.memsw.limit_in_bytes", str(2 * limits.memory))
        if limits.cpus is not None:
            cpu = Path(dirs["cpu"])
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(max(1000, round(limits.cpus * CPU_PERIOD_US))))
        if limits.pids is not None:
            _write(Path(dirs["pids"]) / "pids.max", str(limits.pids) if limits.pids > 0 else "max")
    except BaseException:
        Cgroup(1, dirs).remove()  # the groups made so far, in every hierarchy
        raise
    return Cgroup(1, dirs)


def _create_v2(mount: Path, name: str, limits: Limits) -> Cgroup:
    parent = mount / "pybuild"
    available = set((mount / "cgroup.controllers").read_text().split())
    wanted = {"memory": limits.memory, "cpu": limits.cpus, "pids": limits.pids}
    for controller, value in wanted.items():
        if value is not None and controller not in available:
            raise RuntimeError_(f"the {controller} cgroup controller is not available in {mount}; cannot apply the limit")
    enable = " ".join(f"+{c}" for c in V2_CONTROLLERS if c in available)
    # The group first: once it exists, no other container's `_remove_if_unused` can take the
    # parent away before its controllers are enabled (children then get their interface files).
    d = _make_group(parent, name)
    cg = Cgroup(2, {"unified": str(d)})
    try:
        if enable:
            for level in (mount, parent):
                _write(level / "cgroup.subtree_control", enable)
        if limits.memory is not None:
            _write(d / "memory.max", str(limits.memory))
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", str(limits.memory))
        if limits.cpus is not None:
            _write(d / "cpu.max", f"{max(1000, round(limits.cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}")
        if limits.pids is not None:
            _write(d / "pids.max", str(limits.pids) if limits.pids > 0 else "max")
    except BaseException:
        cg.remove()
        raise
    return cg
