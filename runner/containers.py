"""Containers as records in the store: create, find, list, inspect, remove.

`containers/<id>/` holds `state.json` (runner/state.py), `upper/` (the container's changes, kept
across restarts until `rm`), the sandbox's scratch state (init layer, work dir, /etc files) and
`log`. Creating a container resolves its image and unpacks its layers under the shared store
lock, and records the image's manifest digest so gc keeps it while the container exists; the
lock is released before anything runs (a container may run for days; gc must not wait).
Names are unique: they are checked and claimed under `containers/lock`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pybuild.errors import NotFound, RuntimeError_
from runner import capabilities, names, state, users
from runner.cgroups import Limits
from runner.entrypoint import container_argv
from runner.mounts import remove_tree
from runner.spec import DEFAULT_PATH, NETWORK_MODES, Mount, ProcessSpec, SandboxSpec
from runner.state import ContainerState, RunConfig


@dataclass(frozen=True)
class CreateOptions:
    """What `run`/`create` were asked for (the CLI's flags, already parsed)."""

    image: str
    command: tuple[str, ...] = ()
    name: str | None = None
    env: tuple[str, ...] = ()  # K=V, or K to take the caller's value
    volumes: tuple[str, ...] = ()  # -v specs
    volumes_from: tuple[str, ...] = ()  # CONTAINER[:ro|rw]
    entrypoint: str | None = None
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    network: str = "none"
    limits: Limits = field(default_factory=Limits)
    interactive: bool = False
    tty: bool = False
    init: bool = False
    auto_remove: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()


def containers_dir(root: Path) -> Path:
    return root / "containers"


def container_dir(root: Path, container_id: str) -> Path:
    return containers_dir(root) / container_id


# -- finding -----------------------------------------------------------------------------------


def all_ids(root: Path) -> list[str]:
    try:
        entries = os.listdir(containers_dir(root))
    except FileNotFoundError:
        return []
    return [e for e in entries if len(e) == 64 and (containers_dir(root) / e / "state.json").exists()]


def list_states(root: Path) -> list[ContainerState]:
    """Every container, as it really is now (runner.state.observed), newest first."""
    return sorted(map(state.observed, _records(root)), key=lambda s: s.created, reverse=True)


def find(root: Path, ref: str) -> Path:
    """The directory of the container `ref` names: a full id, a name, or a unique id prefix."""
    ref = ref.lstrip("/")
    ids = all_ids(root)
    if ref in ids:
        return container_dir(root, ref)
    by_name = []
    for cid in ids:
        try:
            if state.load(container_dir(root, cid)).name == ref:
                by_name.append(cid)
        except (FileNotFoundError, ValueError, KeyError):
            continue
    if by_name:
        return container_dir(root, by_name[0])
    matches = [cid for cid in ids if cid.startswith(ref)] if ref else []
    if len(matches) == 1:
        return container_dir(root, matches[0])
    if len(matches) > 1:
        raise RuntimeError_(f"multiple containers match the id prefix {ref!r}", hint="give more characters")
    raise NotFound(f"no such container: {ref}")


def load(root: Path, ref: str) -> tuple[Path, ContainerState]:
    cdir = find(root, ref)
    try:
        return cdir, state.observed(state.load(cdir))
    except FileNotFoundError:
        raise NotFound(f"no such container: {ref}") from None


# -- creating ----------------------------------------------------------------------------------


def merge_env(image_env: Sequence[str], given: Sequence[str], caller_env: dict[str, str]) -> tuple[str, ...]:
    """Image Env, overridden by `-e` values in order. `-e K` takes the caller's K, or removes K
    when the caller has none (Docker's rule). Pure."""
    env: dict[str, str] = {}
    for item in image_env:
        k, _, v = item.partition("=")
        env[k] = v
    for item in given:
        k, sep, v = item.partition("=")
        if not k:
            raise RuntimeError_(f"invalid environment variable: {item!r}")
        if sep:
            env[k] = v
        elif k in caller_env:
            env[k] = caller_env[k]
        else:
            env.pop(k, None)
    return tuple(f"{k}={v}" for k, v in env.items())


def capability_set(add: Sequence[str], drop: Sequence[str]) -> tuple[str, ...]:
    """Docker's default set with `--cap-add`/`--cap-drop` applied (ALL allowed in either). Pure."""
    every = list(capabilities.CAPABILITY_NUMBERS)
    add_n = [c.upper().removeprefix("CAP_") for c in add]
    drop_n = [c.upper().removeprefix("CAP_") for c in drop]
    for c in add_n + drop_n:
        if c != "ALL" and c not in capabilities.CAPABILITY_NUMBERS:
            raise RuntimeError_(f"unknown capability: {c!r}")
    caps = [] if "ALL" in drop_n else list(capabilities.DEFAULT_CAPABILITIES)
    caps = [c for c in caps if c not in drop_n]
    for c in every if "ALL" in add_n else add_n:
        if c not in caps:
            caps.append(c)
    return tuple(caps)


def create(root: Path, opts: CreateOptions, *, caller_env: dict[str, str] | None = None) -> tuple[Path, ContainerState, list[Path]]:
    """Create the container (not started): its directory, upper dir, volumes and record.
    Returns (directory, state, lower dirs top first). Raises NotFound for a missing image."""
    if opts.network not in NETWORK_MODES:
        raise RuntimeError_(f"network {opts.network} not found", hint="pybuild supports --network none and --network host")
    name = names.check_name(opts.name) if opts.name else None
    if opts.workdir is not None and opts.workdir and not opts.workdir.startswith("/"):
        raise RuntimeError_(f"the working directory '{opts.workdir}' is invalid, it needs to be an absolute path")
    from layerstore.locks import store_lock
    from layerstore.store import Store
    from runner import volumes

    specs = [volumes.parse_volume_spec(v) for v in opts.volumes]
    caps = capability_set(opts.cap_add, opts.cap_drop)
    created = state.now()
    with Store.open(root) as store:  # the shared lock: gc waits until the record names the image
        image = store.resolve(opts.image)
        lowers = store.lower_dirs(image)
        cfg = image.config.config
        argv = container_argv(cfg.entrypoint, cfg.cmd, opts.command, opts.entrypoint)
        user = opts.user if opts.user is not None else (cfg.user or "")
        if user:  # refused now, not at start: a refused run leaves no container behind
            users.lookup_in_layers(lowers, user)
        inherited = [m for ref in opts.volumes_from for m in _volumes_from(root, ref)]
        cid = names.random_hex(32)
        env = merge_env(cfg.env or (f"PATH={DEFAULT_PATH}",), opts.env, caller_env if caller_env is not None else dict(os.environ))
        with store_lock(containers_dir(root), exclusive=True, timeout=60):
            name = name or _unused_random_name(root)
            if name in {s.name for s in _records(root)}:
                raise RuntimeError_(
                    f'the container name "/{name}" is already in use',
                    hint="remove (or rename) that container to be able to reuse that name",
                )
            cdir = container_dir(root, cid)
            (cdir / "upper").mkdir(parents=True)
            try:
                mounts = volumes.resolve_mounts(root, specs, list(cfg.volumes or {}), inherited, now=created)
            except BaseException:
                remove_tree(cdir)
                raise
            config = RunConfig(
                argv=tuple(argv),
                env=env,
                cwd=opts.workdir or cfg.working_dir or "/",
                user=user,
                # Docker: the short id, or with the host's network the host's name
                hostname=opts.hostname or (os.uname().nodename if opts.network == "host" else cid[:12]),
                tty=opts.tty,
                open_stdin=opts.interactive,
                network=opts.network,
                mounts=tuple(mounts),
                limits=opts.limits,
                init=opts.init,
                auto_remove=opts.auto_remove,
                capabilities=caps,
                stop_signal=cfg.stop_signal or "SIGTERM",
                entrypoint=(opts.entrypoint,) if opts.entrypoint else (None if opts.entrypoint is not None else cfg.entrypoint),
                cmd=tuple(opts.command) if opts.command else (None if opts.entrypoint is not None else cfg.cmd),
            )
            record = ContainerState(
                id=cid, name=name, created=created, image=opts.image, image_digest=image.digest,
                image_id=image.id, config=config, lowers=tuple(map(str, lowers)),
            )
            state.save(cdir, record)
    return cdir, record, lowers


def _records(root: Path) -> list[ContainerState]:
    """Every container's record as written."""
    out = []
    for cid in all_ids(root):
        try:
            out.append(state.load(container_dir(root, cid)))
        except (FileNotFoundError, ValueError, KeyError):
            continue  # removed meanwhile, or half-written by a crashed create
    return out


def _unused_random_name(root: Path) -> str:
    used = {s.name for s in _records(root)}
    for _ in range(100):
        candidate = names.random_name()
        if candidate not in used:
            return candidate
    return f"{names.random_name()}_{names.random_hex(3)}"


def _volumes_from(root: Path, ref: str) -> list[Mount]:
    """The mounts of container `ref` (`NAME[:ro|:rw]`): volumes and binds, with the mode given."""
    name, _, mode = ref.partition(":")
    if mode not in ("", "ro", "rw"):
        raise RuntimeError_(f"invalid mode for --volumes-from: {mode!r}")
    _, source = load(root, name)
    out = []
    for m in source.config.mounts:
        if m.kind not in ("volume", "bind"):
            continue
        out.append(replace(m, readonly=(mode == "ro") if mode else m.readonly, copy=False))
    return out


# -- the sandbox of a container ----------------------------------------------------------------


def sandbox_spec(cdir: Path, record: ContainerState) -> SandboxSpec:
    """The sandbox a container runs in: its image's lower dirs, its own upper dir."""
    c = record.config
    return SandboxSpec(
        process=ProcessSpec(c.argv, c.env, c.cwd, c.user, c.tty),
        lowers=tuple(Path(p) for p in record.lowers),
        upper=cdir / "upper",
        hostname=c.hostname,
        network=c.network,
        mounts=c.mounts,
        limits=c.limits,
        init=c.init,
        capabilities=c.capabilities,
    )


# -- removing ----------------------------------------------------------------------------------


def remove(root: Path, cdir: Path, *, remove_volumes: bool) -> None:
    """Delete a stopped container: its cgroup (if left), directory and, with `remove_volumes`,
    its anonymous volumes. Idempotent."""
    try:
        record = state.load(cdir)
    except FileNotFoundError:
        return
    cg = record.get_cgroup()
    if cg is not None:
        cg.remove()
    (cdir / "state.json").unlink(missing_ok=True)  # first: a half-removed container is no longer listed
    if cdir.exists():  # a --rm container's supervisor may be removing it too
        remove_tree(cdir)
    if remove_volumes:
        from runner import volumes

        for m in record.config.mounts:
            if m.kind == "volume" and m.name:
                try:
                    if volumes.get(root, m.name).anonymous and not _volume_in_use(root, m.name):
                        volumes.remove(root, m.name)
                except NotFound:
                    pass


def _volume_in_use(root: Path, name: str) -> bool:
    return any(m.kind == "volume" and m.name == name for s in _records(root) for m in s.config.mounts)


def volume_users(root: Path, name: str) -> list[str]:
    """Ids of the containers that mount volume `name`."""
    return [s.id for s in _records(root) if any(m.kind == "volume" and m.name == name for m in s.config.mounts)]


# -- inspecting --------------------------------------------------------------------------------


def signal_number(name: str) -> int:
    """A signal given as a number, `TERM` or `SIGTERM` (any case). RuntimeError_ if unknown."""
    text = name.strip().upper()
    if text.isdigit():
        number = int(text)
        if not 0 < number < signal.NSIG:
            raise RuntimeError_(f"invalid signal: {name}")
        return number
    try:
        return int(signal.Signals["SIG" + text.removeprefix("SIG")])
    except KeyError:
        raise RuntimeError_(f"invalid signal: {name}") from None


def inspect(root: Path, ref: str) -> dict[str, Any]:
    """`docker inspect` of a container: the fields Docker has that pybuild knows (for `pybuild
    inspect`). NotFound if there is no such container."""
    cdir, s = load(root, ref)
    c = s.config
    running = s.status in (state.RUNNING, state.PAUSED)
    binds = [f"{m.source}:{m.destination}{':ro' if m.readonly else ''}" for m in c.mounts if m.kind == "bind"]
    return {
        "Id": s.id,
        "Created": s.created,
        "Path": c.argv[0] if c.argv else "",
        "Args": list(c.argv[1:]),
        "State": {
            "Status": s.status,
            "Running": running,
            "Paused": s.status == state.PAUSED,
            "Restarting": False,
            "OOMKilled": s.oom_killed,
            "Dead": False,
            "Pid": s.pid if running else 0,
            "ExitCode": s.exit_code if s.exit_code is not None else 0,
            "Error": s.error,
            "StartedAt": s.started_at or "0001-01-01T00:00:00Z",
            "FinishedAt": s.finished_at or "0001-01-01T00:00:00Z",
        },
        "Image": s.image_id,
        "ImageDigest": s.image_digest,
        "LogPath": str(cdir / "log"),
        "Name": "/" + s.name,
        "RestartCount": s.restart_count,
        "Driver": "overlay",
        "HostConfig": {
            "Binds": binds or None,
            "NetworkMode": c.network,
            "AutoRemove": c.auto_remove,
            "CapAdd": None,
            "CapDrop": None,
            "Capabilities": ["CAP_" + x for x in c.capabilities],
            "Init": c.init,
            "Memory": c.limits.memory or 0,
            "NanoCpus": int(round((c.limits.cpus or 0) * 1e9)),
            "PidsLimit": c.limits.pids,
            "VolumesFrom": None,
        },
        "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": str(cdir / "upper"), "LowerDir": ":".join(s.lowers)}},
        "Mounts": [
            {
                "Type": m.kind,
                "Name": m.name or None,
                "Source": m.source,
                "Destination": m.destination,
                "Mode": "ro" if m.readonly else "",
                "RW": not m.readonly,
            }
            for m in c.mounts
        ],
        "Config": {
            "Hostname": c.hostname,
            "User": c.user,
            "Tty": c.tty,
            "OpenStdin": c.open_stdin,
            "Env": list(c.env),
            "Cmd": list(c.cmd) if c.cmd is not None else None,
            "Entrypoint": list(c.entrypoint) if c.entrypoint is not None else None,
            "Image": s.image,
            "WorkingDir": c.cwd,
            "StopSignal": c.stop_signal,
            "Volumes": {m.destination: {} for m in c.mounts if m.kind == "volume"} or None,
        },
    }
