"""`--squash`: the layers this build added, merged into one on top of the base image.

The base image's layers are kept as they are (so they stay shared with other images); the
build's own layers are applied in order into one staging directory in the layer format: later
entries replace earlier ones, a whiteout removes what is below it and stays a whiteout (it may
delete something of the base), an opaque directory replaces the directory's earlier contents and
stays opaque. Regular files are hard links to the read-only unpacked layers, so squashing a
512 MiB layer copies no data. History keeps one entry per instruction; all but the last entry
that made a layer are marked empty, so the layer invariant holds.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import replace
from pathlib import Path

import xattr

from layerstore.images import Image
from layerstore.layer_tar import xattrs_of
from layerstore.store import Store

OPAQUE = "trusted.overlay.opaque"


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return bool(xattr.get(path, OPAQUE, nofollow=True) == b"y")
    except OSError:
        return False


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    for name, value in xattrs_of(os.fsencode(src)):  # the opaque marker is set by apply_layer
        try:
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError:
            pass
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def apply_layer(layer: Path, staging: Path) -> None:
    """Apply one unpacked layer (overlay format) onto `staging`, keeping the layer format."""
    dirs: list[tuple[str, str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(layer):
        rel = os.path.relpath(dirpath, layer)
        target_dir = os.path.normpath(os.path.join(staging, rel))
        for name in sorted(dirnames + filenames):
            src = os.path.join(dirpath, name)
            dst = os.path.join(target_dir, name)
            st = os.lstat(src)
            if stat.S_ISDIR(st.st_mode):
                existing = os.path.lexists(dst) and os.path.isdir(dst) and not os.path.islink(dst)
                if _is_opaque(src) or not existing:
                    _remove(dst)
                    os.mkdir(dst, 0o700)
                if _is_opaque(src):
                    xattr.set(dst, OPAQUE, b"y", nofollow=True)
                dirs.append((src, dst, st))
                continue
            _remove(dst)
            if _is_whiteout(st):
                os.mknod(dst, stat.S_IFCHR | 0o000, 0)
            elif stat.S_ISREG(st.st_mode):
                os.link(src, dst)
                continue  # a hard link shares the metadata already
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            else:
                os.mknod(dst, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
            _copy_meta(src, dst, st)
    for src, dst, st in reversed(dirs):
        _copy_meta(src, dst, st)


def squash_image(store: Store, image: Image, base_digest: str | None, *, epoch: int | None = None) -> Image:
    """`image` with the layers it has beyond `base_digest`'s merged into one (None: all)."""
    base = store.images.get(base_digest) if base_digest else None
    keep = len(base.layers) if base else 0
    own_layers = image.layers[keep:]
    own_history = image.history[len(base.history) if base else 0 :]
    if len(own_layers) <= 1:
        return image
    staging = Path(tempfile.mkdtemp(prefix="squash-", dir=store.tmp))
    try:
        for layer in own_layers:
            apply_layer(store.layers.unpack(layer), staging)
        layer = store.layers.commit_dir(staging, source_date_epoch=epoch, consume=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    last = max(i for i, h in enumerate(own_history) if not h.empty_layer)
    history = [h if i == last else replace(h, empty_layer=True) for i, h in enumerate(own_history)]
    return store.write_image(
        parent=base,
        layers=[layer],
        config=image.config.config,
        history=history,
        created=image.config.created,
        instruction="squash",
        message="--squash",
    )
