"""Helpers for layerstore tests: building trees and (hostile) tar archives by hand."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path


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
