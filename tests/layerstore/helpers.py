"""Helpers for layerstore tests: building trees and (hostile) tar archives by hand."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import tarfile
from pathlib import Path

import xattr


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar made with Python's tarfile (as hostile archives are made in the wild)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, *, data: bytes | None = None, link: str = "", mode: int = 0o644,
           major: int = 0, minor: int = 0) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    info.devmajor, info.devminor = major, minor
    if kind == tarfile.REGTYPE and data is None:
        data = b""
    return info, data


def snapshot(root: Path, *, dir_times: bool = True) -> dict[str, tuple[int, int, int, str]]:
    """path -> (mode, size, mtime, symlink target or content) of everything below `root`
    (directory mtimes as 0 unless `dir_times`: they change when a temp entry comes and goes)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            extra = os.readlink(p) if os.path.islink(p) else ""
            if os.path.isfile(p) and not os.path.islink(p):
                extra = open(p, "rb").read().hex()
            is_dir = os.path.isdir(p) and not os.path.islink(p)
            mtime = 0 if is_dir and not dir_times else int(st.st_mtime)
            out[os.path.relpath(p, root)] = (st.st_mode, 0 if is_dir else st.st_size, mtime, extra)
    return out


def make_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def _content(seed: str, size: int) -> bytes:
    """Deterministic bytes: half pseudo-random, half repetitive (so zstd has work of both kinds)."""
    half = hashlib.shake_256(seed.encode()).digest(size // 2)
    text = (seed.encode() + b" line\n") * (size // (len(seed) + 6) + 1)
    return half + text[: size - len(half)]


VARIED_MTIME = 1_700_000_000


def make_varied_tree(root: Path, *, devices: bool = True) -> Path:
    """A tree with every kind of entry and field a layer tar encodes, built the same way every time
    (names, contents, modes, owners, times, xattrs, hardlinks inside and across directories,
    whiteouts, an opaque dir, long and non-UTF-8 names, large ids and times, files around the
    block and chunk sizes, a crowded directory). Needs root (owners, devices, trusted xattrs)."""
    root.mkdir(parents=True)
    files: dict[bytes, bytes] = {}
    for size in (0, 1, 511, 512, 513, 4096, 100_000, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 17):
        files[b"sizes/f%d" % size] = _content(f"s{size}", size)
    for i in range(600):  # a crowded directory: more entries than one batch of anything
        files[b"crowd/n%04d" % i] = _content(f"c{i}", i * 37 % 3000)
    files[b"names/" + b"L" * 99] = b"ninety-nine"
    files[b"names/" + b"M" * 100] = b"one hundred"
    files[b"names/" + b"N" * 180] = b"long name: pax path"
    files[b"names/" + b"d" * 90 + b"/" + b"e" * 90] = b"long path, short names"
    files["names/caf\u00e9-\u65e5\u672c".encode()] = b"utf-8 name"
    files[b"names/latin1-\xe9\xff"] = b"not utf-8"
    files[b"names/sp ace & 'quote\""] = b"odd characters"
    files[b"zz-last/hard-a"] = b"hardlinked content\n" * 100
    files[b"meta/suid"] = b"#!/bin/sh\n"
    files[b"meta/owned"] = b"owned by someone else\n"
    files[b"meta/big-ids"] = b"ids beyond octal fields\n"
    files[b"meta/xattrs"] = b"with attributes\n"
    files[b"meta/future"] = b"mtime beyond the octal field\n"
    files[b"meta/old"] = b"mtime zero\n"
    files[b"meta/unreadable"] = b"mode 000\n"
    files[b"upper/opq/inside"] = b"in an opaque dir\n"
    files[b"upper/keep"] = b"kept\n"
    for rel, data in files.items():
        path = os.path.join(os.fsencode(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    b = os.fsencode(root)

    def p(rel: str | bytes) -> bytes:
        return os.path.join(b, rel.encode() if isinstance(rel, str) else rel)

    os.makedirs(p("empty/dir"))
    os.makedirs(p("private"), mode=0o700)
    os.makedirs(p("sticky"))
    os.chmod(p("sticky"), 0o1777)
    os.link(p("zz-last/hard-a"), p("zz-last/hard-b"))  # same directory
    os.link(p("zz-last/hard-a"), p("crowd/0-link-before-first"))  # an earlier path: it becomes the first
    os.link(p("sizes/f4096"), p("names/link-to-sizes"))  # across directories
    os.makedirs(p("links"))
    os.symlink(b"../sizes/f1", p("links/rel"))
    os.symlink(b"/etc/passwd", p("links/abs"))
    os.symlink(b"t" * 150, p("links/long-target"))
    os.symlink("caf\u00e9".encode(), p("links/utf8-target"))
    os.symlink(b"dangling/\xff", p("links/binary-target"))
    os.chmod(p("meta/suid"), 0o4755)
    os.chown(p("meta/owned"), 1234, 5678)
    os.chown(p("meta/big-ids"), 3_000_000, 2_097_152)  # >= 8**7: carried in the pax header
    os.chmod(p("meta/unreadable"), 0)
    xattr.set(p("meta/xattrs"), b"user.b", b"second")
    xattr.set(p("meta/xattrs"), b"user.a", b"first")
    xattr.set(p("meta/xattrs"), b"user.binary", b"\xff\x00\xfe")
    xattr.set(p("meta/xattrs"), b"trusted.overlay.origin", b"dropped")
    xattr.set(p("meta/suid"), b"security.capability", b"\x01\x00\x00\x02\x00\x04\x00\x00" + b"\x00" * 12)
    xattr.set(p("sizes"), b"user.on-a-dir", b"yes")
    if devices:
        os.mknod(p("dev-null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(p("dev-loop"), stat.S_IFBLK | 0o660, os.makedev(7, 0))
        os.mkfifo(p("fifo"), 0o640)
        os.mknod(p("upper/gone"), stat.S_IFCHR, 0)  # overlay whiteouts
        os.mknod(p("upper/opq/gone-too"), stat.S_IFCHR, 0)
        xattr.set(p("upper/opq"), b"trusted.overlay.opaque", b"y")
        sock, dir_fd = socket.socket(socket.AF_UNIX), os.open(b, os.O_PATH)
        try:
            sock.bind(f"/proc/self/fd/{dir_fd}/a.sock")  # sockets are skipped (short path: sun_path)
        finally:
            sock.close()
            os.close(dir_fd)
    times = {b"meta/future": 2**33 + 5, b"meta/old": 0}
    for dirpath, dirs, names in os.walk(b, topdown=False):
        for n in names + dirs:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, b)
            t = times.get(rel, VARIED_MTIME + len(rel))
            os.utime(full, ns=(t * 10**9 + 123, t * 10**9 + 456_789), follow_symlinks=False)
    os.utime(b, ns=(VARIED_MTIME * 10**9,) * 2)
    return root
