"""A container's record, `containers/<id>/state.json`, and the truth about it.

The record is written only through `layerstore.atomic.atomic_write`, and read-modify-written only
under the container's lock (`update`), so the supervisor recording an exit and a CLI recording a
pause never lose each other's change.

What `ps` shows must be true even when nobody was there to record an exit (the supervisor was
SIGKILLed, the machine's pybuild was killed): `observed` combines the record with the kernel's
view. A recorded "running" container whose PID 1 (identified by pid *and* start time, so a
reused pid is not mistaken for it) is gone has exited, with an unknown status unless one was
recorded.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from runner.cgroups import Cgroup, Limits
from runner.spec import Mount

CREATED, RUNNING, PAUSED, EXITED = "created", "running", "paused", "exited"
UNKNOWN_EXIT = -1


@dataclass(frozen=True)
class RunConfig:
    """How the container runs: fixed at `run`/`create`, reused by every `start`."""

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    hostname: str = ""
    tty: bool = False
    open_stdin: bool = False
    network: str = "none"
    mounts: tuple[Mount, ...] = ()
    limits: Limits = field(default_factory=Limits)
    init: bool = False
    auto_remove: bool = False
    capabilities: tuple[str, ...] = ()
    stop_signal: str = "SIGTERM"
    entrypoint: tuple[str, ...] | None = None  # as the image/--entrypoint gave them, for inspect
    cmd: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["mounts"] = [m.to_json() for m in self.mounts]
        d["limits"] = self.limits.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunConfig:
        d = dict(d)
        d["mounts"] = tuple(Mount.from_json(m) for m in d.get("mounts", ()))
        d["limits"] = Limits.from_json(d.get("limits"))
        for key in ("argv", "env", "capabilities"):
            d[key] = tuple(d.get(key) or ())
        for key in ("entrypoint", "cmd"):
            d[key] = tuple(d[key]) if d.get(key) is not None else None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    created: str
    image: str  # as the user named it
    image_digest: str  # manifest digest: gc keeps it while this container exists
    image_id: str  # config digest (Docker's image ID)
    config: RunConfig
    lowers: tuple[str, ...] = ()  # the image's unpacked layers, top first
    status: str = CREATED
    pid: int = 0
    pid_start: int = 0  # /proc/PID/stat starttime, to tell a reused pid apart
    supervisor_pid: int = 0
    supervisor_start: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    started_at: str = ""
    finished_at: str = ""
    cgroup: dict[str, Any] | None = None
    restart_count: int = 0

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = self.config.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ContainerState:
        d = dict(d)
        d["config"] = RunConfig.from_json(d["config"])
        d["lowers"] = tuple(d.get("lowers") or ())
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def get_cgroup(self) -> Cgroup | None:
        return Cgroup.from_json(self.cgroup) if self.cgroup else None


def now() -> str:
    """RFC 3339 with nanoseconds, UTC, as Docker writes container times."""
    return now_from_ns(time.time_ns())


def now_from_ns(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def parse_time(text: str) -> float | None:
    if not text:
        return None
    import calendar

    main, _, frac = text.rstrip("Z").partition(".")
    try:
        seconds = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return seconds + (float("0." + frac) if frac else 0.0)


# -- files and locking -------------------------------------------------------------------------


def state_path(cdir: Path) -> Path:
    return cdir / "state.json"


def load(cdir: Path) -> ContainerState:
    """The recorded state (FileNotFoundError if the container does not exist)."""
    with open(state_path(cdir), "rb") as f:
        return ContainerState.from_json(json.loads(f.read()))


def save(cdir: Path, state: ContainerState) -> None:
    from layerstore.atomic import atomic_write  # here: `ps` and `exec` never write

    atomic_write(state_path(cdir), json.dumps(state.to_json(), sort_keys=True, separators=(",", ":")).encode())


@contextmanager
def locked(cdir: Path) -> Iterator[None]:
    """The container's own lock (an flock on `containers/<id>/lock`), for read-modify-write.
    FileNotFoundError if the container's directory is gone (never recreates it)."""
    fd = os.open(cdir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(cdir: Path, **changes: Any) -> ContainerState:
    """Apply `changes` to the recorded state under the container's lock; the new state."""
    with locked(cdir):
        state = replace(load(cdir), **changes)
        save(cdir, state)
    return state


# -- the truth ---------------------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), None if there is no such process."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name may contain spaces and parentheses: split after its last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None  # a zombie has exited
    return int(fields[19])


def is_alive(pid: int, start: int) -> bool:
    """True if the process `pid` that started at `start` still runs."""
    return pid > 0 and process_start_time(pid) == start


def observed(state: ContainerState) -> ContainerState:
    """The state as it really is now (see the module docstring). Pure but for reading /proc and
    the freezer."""
    if state.status not in (RUNNING, PAUSED):
        return state
    if is_alive(state.pid, state.pid_start):
        cg = state.get_cgroup()
        paused = cg is not None and cg.is_frozen()
        return replace(state, status=PAUSED if paused else RUNNING)
    if state.exit_code is not None:
        return replace(state, status=EXITED)
    supervisor_alive = is_alive(state.supervisor_pid, state.supervisor_start)
    reason = (
        "the container's process is gone but its supervisor has not recorded an exit status yet"
        if supervisor_alive
        else f"its supervisor (pid {state.supervisor_pid}) died and took the container with it; the exit status is unknown"
    )
    return replace(state, status=EXITED, exit_code=UNKNOWN_EXIT, error=reason)
