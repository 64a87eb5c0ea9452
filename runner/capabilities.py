"""Linux capabilities: Docker's default set, and dropping everything else.

A container's root keeps exactly `DEFAULT_CAPABILITIES` (moby `oci/caps/defaults.go`); every other
capability is removed from the bounding set, so no exec, setuid binary or file capability can
bring it back. Inheritable and ambient sets are empty (CVE-2022-24769: Docker 20.10.14 stopped
filling the inheritable set). A non-root user ends with no capabilities at all: the kernel clears
permitted and effective when the uid leaves 0.
"""

from __future__ import annotations

from runner import namespaces as ns

# capability(7) numbers
CAPABILITY_NUMBERS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        [
            "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
            "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
            "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
            "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
            "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
            "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
        ]
    )
}

# moby oci/caps/defaults.go DefaultCapabilities()
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


def mask(names: tuple[str, ...] | list[str]) -> int:
    """The bit mask of capability names (with or without the CAP_ prefix, any case).

    Raises ValueError naming an unknown capability.
    """
    bits = 0
    for name in names:
        key = name.upper().removeprefix("CAP_")
        if key not in CAPABILITY_NUMBERS:
            raise ValueError(f"unknown capability {name!r}")
        bits |= 1 << CAPABILITY_NUMBERS[key]
    return bits


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITY_NUMBERS.values())


def drop_bounding(keep: int) -> None:
    """Remove every capability not in `keep` from the bounding set, and clear the ambient set.

    Needs CAP_SETPCAP; call before changing uid. Idempotent.
    """
    for cap in range(last_capability() + 1):
        if not keep >> cap & 1:
            ns.prctl(ns.PR_CAPBSET_DROP, cap)
    try:
        ns.prctl(ns.PR_CAP_AMBIENT, ns.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:  # pragma: no cover - kernels before 4.3 have no ambient set
        pass


def set_process_capabilities(keep: int, *, root: bool) -> None:
    """Effective = permitted = `keep` for root, nothing for other users; inheritable empty."""
    bits = keep if root else 0
    ns.capset(bits, bits, 0)
