"""Volumes: named ones kept in the store (`volumes/<name>/_data`), anonymous ones for an image's
VOLUMEs, bind mounts, and `-v` specs.

A volume's contents live outside every container's upper dir, so they are never part of a
committed layer. `volumes/<name>/volume.json` records when it was made and whether it is
anonymous (removed with a `--rm` container, or by `rm -v`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerstore.atomic import atomic_write
from pybuild.errors import NotFound, RuntimeError_
from runner.mounts import remove_tree
from runner.names import random_hex
from runner.spec import Mount

# Docker's volume name rule (daemon/names.RestrictedNamePattern)
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@dataclass(frozen=True)
class Volume:
    name: str
    path: Path  # the data directory, what is mounted
    created: str
    anonymous: bool
    labels: dict[str, str]

    def inspect(self) -> dict[str, Any]:
        """`docker volume inspect` fields."""
        return {
            "CreatedAt": self.created,
            "Driver": "local",
            "Labels": self.labels or None,
            "Mountpoint": str(self.path),
            "Name": self.name,
            "Options": None,
            "Scope": "local",
        }


def volumes_dir(root: Path) -> Path:
    return root / "volumes"


def _meta(root: Path, name: str) -> Path:
    return volumes_dir(root) / name / "volume.json"


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise RuntimeError_(
            f"{name!r} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
        )


def create(root: Path, name: str | None = None, *, labels: dict[str, str] | None = None, now: str = "") -> Volume:
    """Create the volume `name` (a new anonymous one if None). Idempotent for an existing name:
    the existing volume is returned unchanged."""
    anonymous = name is None
    name = name or random_hex(32)
    check_name(name)
    base = volumes_dir(root) / name
    if (base / "volume.json").exists():
        return get(root, name)
    (base / "_data").mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "created": now, "anonymous": anonymous, "labels": labels or {}}
    atomic_write(base / "volume.json", json.dumps(meta, sort_keys=True).encode())
    return get(root, name)


def get(root: Path, name: str) -> Volume:
    try:
        meta = json.loads(_meta(root, name).read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no such volume: {name}") from None
    except ValueError as e:
        raise RuntimeError_(f"volume {name}: damaged volume.json: {e}") from e
    return Volume(name, volumes_dir(root) / name / "_data", meta.get("created", ""), bool(meta.get("anonymous")), meta.get("labels") or {})


def all_volumes(root: Path) -> list[Volume]:
    try:
        names = sorted(os.listdir(volumes_dir(root)))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            out.append(get(root, name))
        except NotFound:
            continue  # half-created or half-removed
    return out


def remove(root: Path, name: str) -> None:
    """Delete the volume and its data. NotFound if it does not exist."""
    base = volumes_dir(root) / name
    if not _meta(root, name).exists():
        raise NotFound(f"no such volume: {name}")
    os.unlink(base / "volume.json")  # first: a half-removed volume is no longer listed
    remove_tree(base)


# -- -v specs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeSpec:
    """One parsed `-v`: a bind (source is an absolute host path), a named volume, or an anonymous
    volume (no source)."""

    destination: str
    source: str = ""
    kind: str = "volume"  # "bind" or "volume"
    readonly: bool = False
    copy: bool = True  # copy the image's files into a new empty volume (off with `nocopy`)


def parse_volume_spec(text: str) -> VolumeSpec:
    """`[SRC:]DST[:OPTS]` as `docker run -v` takes it (OPTS: ro, rw, nocopy, z, Z, propagation
    modes, comma-separated; the last two kinds are accepted and ignored)."""
    parts = text.split(":")
    if len(parts) == 1:
        source, destination, opts = "", parts[0], ""
    elif len(parts) == 2:
        if parts[1] and not parts[1].startswith("/") and parts[0].startswith("/"):
            source, destination, opts = "", parts[0], parts[1]
        else:
            source, destination, opts = parts[0], parts[1], ""
    elif len(parts) == 3:
        source, destination, opts = parts
    else:
        raise RuntimeError_(f"invalid volume specification: {text!r}")
    if not destination.startswith("/"):
        raise RuntimeError_(f"invalid volume specification: {text!r}: the destination must be an absolute path")
    readonly, copy = False, True
    for opt in filter(None, opts.split(",")):
        if opt == "ro":
            readonly = True
        elif opt == "rw":
            readonly = False
        elif opt == "nocopy":
            copy = False
        elif opt in ("z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave", "consistent", "cached", "delegated"):
            continue
        else:
            raise RuntimeError_(f"invalid volume specification: {text!r}: unknown option {opt!r}")
    destination = os.path.normpath(destination)
    if not source:
        return VolumeSpec(destination, readonly=readonly, copy=copy)
    if source.startswith("/"):
        return VolumeSpec(destination, os.path.normpath(source), "bind", readonly, copy)
    if "/" in source or source.startswith("."):
        raise RuntimeError_(f"invalid volume specification: {text!r}: a host path must be absolute")
    check_name(source)
    return VolumeSpec(destination, source, "volume", readonly, copy)


def resolve_mounts(
    root: Path,
    specs: list[VolumeSpec],
    image_volumes: list[str],
    inherited: list[Mount],
    *,
    now: str = "",
) -> list[Mount]:
    """The container's mounts: `-v` specs (named volumes created as needed, bind sources checked),
    then mounts inherited with --volumes-from, then an anonymous volume for each image VOLUME no
    other mount covers. A later `-v` on the same destination is an error, as in Docker.

    Everything is checked before any volume is made, and a failure while making them removes
    the ones this call made: a refused `run` leaves no volume behind."""
    seen: set[str] = set()
    for spec in specs:
        if spec.destination in seen:
            raise RuntimeError_(f"duplicate mount point: {spec.destination}")
        seen.add(spec.destination)
        if spec.kind == "bind" and not os.path.exists(spec.source):
            raise RuntimeError_(f"invalid mount config: bind source path does not exist: {spec.source}")
    made: list[str] = []

    def volume_mount(name: str | None, destination: str, readonly: bool = False, copy: bool = True) -> Mount:
        if name is None or not _meta(root, name).exists():
            volume = create(root, name, now=now)
            made.append(volume.name)
        else:
            volume = get(root, name)
        return Mount(destination, "volume", str(volume.path), readonly, name=volume.name, copy=copy)

    mounts: list[Mount] = []
    try:
        for spec in specs:
            if spec.kind == "bind":
                mounts.append(Mount(spec.destination, "bind", spec.source, spec.readonly))
            else:
                mounts.append(volume_mount(spec.source or None, spec.destination, spec.readonly, spec.copy))
        for m in inherited:
            if m.destination not in seen:
                seen.add(m.destination)
                mounts.append(m)
        for destination in map(os.path.normpath, image_volumes):
            if destination not in seen:
                seen.add(destination)
                mounts.append(volume_mount(None, destination))
    except BaseException:
        for name in made:
            remove(root, name)
        raise
    return mounts


def copy_into_empty_volume(source: Path, volume: Path) -> None:
    """Docker's copy-up: the image's files at the mount point become the contents of a volume that
    is still empty (owners, modes, times and symlinks kept). No-op when either side is empty."""
    import shutil

    if not source.is_dir() or any(os.scandir(volume)):
        return
    entries = os.listdir(source)
    if not entries:
        return
    for name in entries:
        src, dst = source / name, volume / name
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)
        else:
            shutil.copy2(src, dst, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(volume):
        for name in dirnames + filenames:
            target = os.path.join(dirpath, name)
            st = os.lstat(os.path.join(source, os.path.relpath(target, volume)))
            os.lchown(target, st.st_uid, st.st_gid)
    st = os.stat(source)
    os.chown(volume, st.st_uid, st.st_gid)
    os.chmod(volume, st.st_mode & 0o7777)
