"""What a sandbox runs: frozen values the builder and the container lifecycle fill in.

A `SandboxSpec` is everything needed to run one process tree over an overlay root: the process
(argv, env, cwd, user, tty), the file system (lower dirs top first, the upper dir, extra mounts),
the namespaces' identity (hostname, network mode) and the limits. It holds no open resources, so it
can be stored (state.json) and rebuilt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runner.capabilities import DEFAULT_CAPABILITIES
from runner.cgroups import Limits

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETWORK_MODES = ("none", "host")


@dataclass(frozen=True)
class Mount:
    """An extra mount inside the container.

    kind: "bind" (source is a host path: file or dir), "volume" (same, source is the volume's
    data dir), "tmpfs" (source unused; `size` bytes, `mode`), "secret" (source is a host file,
    always read-only).
    """

    destination: str
    kind: str = "bind"
    source: str = ""
    readonly: bool = False
    size: int | None = None
    mode: int | None = None
    name: str = ""  # volume name, for inspect
    copy: bool = False  # volume: copy the image's files there into it while it is empty

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "", False)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Mount:
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ProcessSpec:
    """The process to start: argv (argv[0] looked up in the container's PATH), env as K=V,
    working directory (created if missing), `user[:group]` resolved in the container."""

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    tty: bool = False


@dataclass(frozen=True)
class SandboxSpec:
    """One process tree in fresh namespaces over overlay(lowers, upper)."""

    process: ProcessSpec
    lowers: tuple[Path, ...]  # top first
    upper: Path
    hostname: str = "pybuild"
    network: str = "none"
    mounts: tuple[Mount, ...] = ()
    limits: Limits = field(default_factory=Limits)
    init: bool = False
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    etc_hosts: str | None = None  # contents; None: the default for the network mode
    resolv_conf: str | None = None


@dataclass(frozen=True)
class ExitStatus:
    """How a process tree ended: `code` is what a shell would report (128+N for signal N)."""

    code: int
    signal: int | None = None
    oom_killed: bool = False

    @classmethod
    def from_wait_status(cls, status: int, *, oom_killed: bool = False) -> ExitStatus:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            return cls(128 + sig, sig, oom_killed)
        return cls(os.WEXITSTATUS(status), None, oom_killed)
