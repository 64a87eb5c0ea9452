"""Network modes and the three files every container gets: /etc/hosts, /etc/hostname and
/etc/resolv.conf.

- `none`: a fresh network namespace with only the loopback device, brought up.
- `host`: the caller's network namespace (no isolation).

The files' contents are pure functions of the mode and the host's files; `bring_up_loopback`
is the one kernel call.
"""

from __future__ import annotations

import fcntl
import os
import struct

from runner import namespaces as ns

# Docker's /etc/hosts for a container without a network (daemon/container_operations.go,
# libnetwork/etchosts: the default entries).
_DEFAULT_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)

AF_INET = 2
SOCK_DGRAM = 2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def hosts_file(network: str, hostname: str, host_hosts: str | None) -> str:
    """The container's /etc/hosts: the host's for `host`, Docker's defaults otherwise."""
    if network == "host" and host_hosts is not None:
        return host_hosts
    return _DEFAULT_HOSTS + f"127.0.1.1\t{hostname}\n"


def resolv_file(host_resolv: str | None) -> str:
    """The container's /etc/resolv.conf: the host's (a container with `--network none` cannot
    reach a name server anyway, but tools that read the file still find one, as with Docker)."""
    return host_resolv if host_resolv is not None else ""


def hostname_file(hostname: str) -> str:
    return hostname + "\n"


def read_host_file(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def bring_up_loopback() -> None:
    """Set IFF_UP on `lo` in the calling process's network namespace."""
    fd = ns.socket_fd(AF_INET, SOCK_DGRAM)
    try:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(fd, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(fd, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
    finally:
        os.close(fd)
