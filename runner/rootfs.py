"""Building the container's file system view, inside its fresh mount namespace, then pivot_root.

Runs in the container's PID 1 before it execs (so /proc belongs to the new PID namespace and
mqueue to the new IPC namespace). Everything is mounted under the merged overlay root; the
host's tree is then detached with `pivot_root(".", ".")` + `umount2(".", MNT_DETACH)` (runc's
trick: no put_old directory needed), so no host mount is reachable from inside.

The layout follows runc/Docker defaults: /proc with the masked and read-only paths of moby's
`oci/defaults.go`, /sys read-only, a tmpfs /dev holding only null, zero, full, random, urandom,
tty, a private devpts, shm and mqueue, and the /etc/hosts, /etc/hostname and /etc/resolv.conf
files bind-mounted from the container's own directory.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from layerstore.rootpath import resolve_in_root
from runner import namespaces as ns
from runner.mounts import mount_overlay
from runner.spec import Mount

# moby oci/defaults.go
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# name, major, minor (runc's default devices, all mode 0666)
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEV_SYMLINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
# The mount points a container always needs; the init layer provides the ones an image lacks.
ALWAYS_NEEDED = (("/proc", True), ("/sys", True), ("/dev", True), ("/etc/hosts", False), ("/etc/hostname", False), ("/etc/resolv.conf", False))

_NOSUID_NODEV_NOEXEC = ns.MS_NOSUID | ns.MS_NODEV | ns.MS_NOEXEC


@dataclass(frozen=True)
class RootfsPlan:
    """Everything PID 1 mounts: computed by the parent (paths resolved through the layers), applied
    by `enter_rootfs` in the child."""

    merged: str
    lowers: tuple[str, ...]  # the init layer first, then the image's layers, top first
    upper: str
    work: str
    etc_files: tuple[tuple[str, str], ...]  # (host file, destination)
    mounts: tuple[Mount, ...]  # parents before children


def _inside(merged: str, path: str) -> str:
    return os.path.join(merged, path.lstrip("/"))


def enter_rootfs(plan: RootfsPlan) -> None:
    """Mount the container's tree and make it the root of the calling process's (new) mount
    namespace. Raises OSError/RuntimeError_ on failure; the namespace dies with the process."""
    ns.mount(None, "/", None, ns.MS_REC | ns.MS_PRIVATE)
    merged = plan.merged
    mount_overlay(Path(merged), [Path(p) for p in plan.lowers], Path(plan.upper), Path(plan.work))
    ns.mount("proc", _inside(merged, "/proc"), "proc", _NOSUID_NODEV_NOEXEC)
    ns.mount("sysfs", _inside(merged, "/sys"), "sysfs", _NOSUID_NODEV_NOEXEC | ns.MS_RDONLY)
    _mount_dev(_inside(merged, "/dev"))
    for host_file, destination in plan.etc_files:
        ns.mount(host_file, mount_target(merged, destination, is_dir=False), None, ns.MS_BIND)
    for mount in plan.mounts:
        is_dir = mount.kind == "tmpfs" or os.path.isdir(mount.source)
        _mount_one(mount, mount_target(merged, mount.destination, is_dir=is_dir))
    for path in MASKED_PATHS:
        _mask(merged, path)
    for path in READONLY_PATHS:
        target = _inside(merged, path)
        if os.path.lexists(target):
            ns.mount(target, target, None, ns.MS_BIND | ns.MS_REC)
            _remount_readonly(target)
    os.chdir(merged)
    ns.pivot_root(".", ".")
    ns.umount2(".", ns.MNT_DETACH)
    os.chdir("/")


def mount_target(merged: str, destination: str, *, is_dir: bool) -> str:
    """The host path to mount on for `destination`, resolved inside the root as it is now (earlier
    mounts included; symlinks re-rooted). The init layer normally provides it; a mount point nested
    in a volume or tmpfs is created there, as Docker does."""
    target = resolve_in_root(Path(merged), destination)
    if not os.path.lexists(target):
        if is_dir:
            os.makedirs(target, 0o755, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    return str(target)


def _mount_dev(dev: str) -> None:
    ns.mount("tmpfs", dev, "tmpfs", ns.MS_NOSUID | ns.MS_STRICTATIME, "mode=755,size=65536k")
    old_umask = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            os.mknod(os.path.join(dev, name), 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        for name, target in DEV_SYMLINKS:
            os.symlink(target, os.path.join(dev, name))
        if os.path.exists("/proc/kcore"):
            os.symlink("/proc/kcore", os.path.join(dev, "core"))
        for sub in ("pts", "shm", "mqueue"):
            os.mkdir(os.path.join(dev, sub), 0o755)
        os.close(os.open(os.path.join(dev, "console"), os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    finally:
        os.umask(old_umask)
    ns.mount("devpts", os.path.join(dev, "pts"), "devpts", ns.MS_NOSUID | ns.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    ns.mount("shm", os.path.join(dev, "shm"), "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    ns.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", _NOSUID_NODEV_NOEXEC)


def _mount_one(mount: Mount, target: str) -> None:
    if mount.kind == "tmpfs":
        opts = [f"mode={mount.mode:o}" if mount.mode is not None else "mode=1777"]
        if mount.size:
            opts.append(f"size={mount.size}")
        flags = ns.MS_NOSUID | ns.MS_NODEV | (ns.MS_RDONLY if mount.readonly else 0)
        ns.mount("tmpfs", target, "tmpfs", flags, ",".join(opts))
        return
    if mount.kind == "volume" and mount.copy:
        from runner.volumes import copy_into_empty_volume

        copy_into_empty_volume(Path(target), Path(mount.source))
    ns.mount(mount.source, target, None, ns.MS_BIND | ns.MS_REC)
    if mount.readonly or mount.kind == "secret":
        _remount_readonly(target)


def _remount_readonly(target: str) -> None:
    """Make a bind mount read-only, keeping the flags the kernel may have locked on it."""
    st = os.statvfs(target)
    keep = 0
    for vfs_flag, ms_flag in ((os.ST_NOSUID, ns.MS_NOSUID), (os.ST_NODEV, ns.MS_NODEV), (os.ST_NOEXEC, ns.MS_NOEXEC)):
        if st.f_flag & vfs_flag:
            keep |= ms_flag
    ns.mount(None, target, None, ns.MS_BIND | ns.MS_REMOUNT | ns.MS_RDONLY | keep)


def _mask(merged: str, path: str) -> None:
    """Hide a path: /dev/null over a file, an empty read-only tmpfs over a directory."""
    target = _inside(merged, path)
    try:
        st = os.lstat(target)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    if stat.S_ISDIR(st.st_mode):
        ns.mount("tmpfs", target, "tmpfs", ns.MS_RDONLY, "size=0")
    else:
        ns.mount(_inside(merged, "/dev/null"), target, None, ns.MS_BIND)


def bind_console(slave_path: str) -> None:
    """Bind the container's terminal onto /dev/console (after pivot_root), as runc does."""
    ns.mount(slave_path, "/dev/console", None, ns.MS_BIND)
