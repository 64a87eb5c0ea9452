"""Base images without a registry: `import` of a rootfs tarball or directory (as `docker import`),
`bootstrap busybox` from the host's static busybox, `bootstrap debian:SUITE` through debootstrap.

`bootstrap busybox` is deterministic: the image is a function of the busybox binary only (every
mtime and the image's `created` are the binary's mtime, or SOURCE_DATE_EPOCH if earlier), so two
stores bootstrapped from the same binary hold the same digests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from layerstore.compression import decompressor, sniff
from layerstore.images import Image, rfc3339
from layerstore.layers import Layer, extract_into, remove_tree
from layerstore.oci import ContainerConfig, HistoryEntry
from layerstore.store import Store
from pybuild.errors import NotFound, StoreError

BUSYBOX = Path("/bin/busybox")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_MIRROR = "http://deb.debian.org/debian"

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_DIRS = {"bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "etc": 0o755,
         "dev": 0o755, "proc": 0o555, "sys": 0o555, "tmp": 0o1777, "root": 0o700, "var": 0o755, "home": 0o755}


def import_rootfs(
    store: Store,
    source: Path | BinaryIO,
    tag: str | None,
    *,
    source_name: str,
    message: str | None = None,
    config: ContainerConfig | None = None,
    compression: str = "zstd",
    source_date_epoch: int | None = None,
) -> Image:
    """Make a one-layer image from a directory or a tarball (plain, gzip, zstd, bzip2 or xz; a
    file object for `-`), as `docker import` does, and tag it. Its history comment is `message`,
    or `Imported from SOURCE` (as Docker's). A tarball goes through the safe extractor first, so a
    hostile one is refused before anything is stored."""
    if isinstance(source, Path) and source.is_dir():
        layer = store.layers.commit_dir(source, compression=compression, source_date_epoch=source_date_epoch)
    else:
        with _work_tree(store, "import-") as work:
            if isinstance(source, Path):
                try:
                    f: BinaryIO = open(source, "rb")
                except FileNotFoundError:
                    raise NotFound(f"{source}: no such file or directory") from None
            else:
                f = source
            with f:
                head = f.peek(8)[:8] if hasattr(f, "peek") else b""
                try:
                    extract_into(decompressor(f, sniff(head)), work)
                except StoreError as e:
                    raise type(e)(f"{source_name}: {e.message}", hint=e.hint) from None
            layer = store.layers.commit_dir(work, compression=compression, source_date_epoch=source_date_epoch, consume=True)
    return _base_image(
        store, layer, tag, config=config or ContainerConfig(), created=rfc3339(source_date_epoch), created_by="",
        comment=message or f"Imported from {source_name}", instruction=f"import {source_name}", message=message,
    )


def bootstrap_busybox(
    store: Store,
    tag: str = "busybox:latest",
    *,
    busybox: Path = BUSYBOX,
    compression: str = "zstd",
    source_date_epoch: int | None = None,
) -> Image:
    """`busybox:latest` from a static busybox binary: /bin/busybox, a hardlink for every applet
    it lists (`busybox --list-full`), /etc/passwd and /etc/group, the usual empty directories."""
    if not busybox.is_file():
        raise NotFound(f"{busybox} is missing", hint="install Debian's busybox-static")
    epoch = int(busybox.stat().st_mtime)
    if source_date_epoch is not None:
        epoch = min(epoch, source_date_epoch)
    try:
        listing = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True).stdout
        banner = subprocess.run([str(busybox)], capture_output=True, text=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError) as e:
        raise StoreError(f"{busybox}: cannot run it: {e}") from None
    version = banner[0].split(" multi-call")[0] if banner else "BusyBox"
    with _work_tree(store, "bootstrap-") as tree:
        for d, mode in _DIRS.items():
            (tree / d).mkdir(exist_ok=True)
            os.chmod(tree / d, mode)
        shutil.copyfile(busybox, tree / "bin/busybox")
        os.chmod(tree / "bin/busybox", 0o755)
        for applet in sorted(set(listing.split())):
            path = tree / applet
            if applet in ("bin/busybox", "linuxrc") or ".." in Path(applet).parts or applet.startswith("/"):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(tree / "bin/busybox", path)
        (tree / "etc/passwd").write_text(_PASSWD)
        (tree / "etc/group").write_text(_GROUP)
        _set_times(tree, epoch)
        layer = store.layers.commit_dir(tree, compression=compression, source_date_epoch=epoch, consume=True)
    return _base_image(
        store, layer, tag, config=ContainerConfig(env=(DEFAULT_PATH,), cmd=("sh",)), created=rfc3339(epoch),
        created_by=f"pybuild bootstrap busybox ({version})", instruction="bootstrap busybox", message=f"from {busybox}",
    )


def bootstrap_debian(
    store: Store,
    suite: str,
    tag: str,
    *,
    mirror: str = DEBIAN_MIRROR,
    variant: str = "minbase",
    compression: str = "zstd",
    source_date_epoch: int | None = None,
) -> Image:
    """`debian:SUITE` through debootstrap (which must be installed and reach `mirror`)."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise NotFound("debootstrap is not installed", hint="apt-get install debootstrap")
    with _work_tree(store, "debootstrap-") as tree:
        proc = subprocess.run(
            [debootstrap, f"--variant={variant}", suite, str(tree), mirror], capture_output=True, text=True
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StoreError(f"debootstrap {suite} failed (exit {proc.returncode}): {tail[0]}")
        shutil.rmtree(tree / "debootstrap", ignore_errors=True)  # debootstrap's own leftovers
        layer = store.layers.commit_dir(tree, compression=compression, source_date_epoch=source_date_epoch, consume=True)
    return _base_image(
        store, layer, tag, config=ContainerConfig(env=(DEFAULT_PATH,), cmd=("bash",)), created=rfc3339(source_date_epoch),
        created_by=f"pybuild bootstrap debian:{suite} (debootstrap --variant={variant})",
        instruction=f"bootstrap debian:{suite}", message=f"from {mirror}",
    )


@contextmanager
def _work_tree(store: Store, prefix: str) -> Iterator[Path]:
    """A new directory (0755, the mode of a layer's root) in the store's tmp/ for the block, to be
    committed with `consume=True`; whatever is left of it afterwards is removed."""
    tree = store.mkdtemp(prefix)
    os.chmod(tree, 0o755)
    try:
        yield tree
    finally:
        remove_tree(tree, store.tmp)


def _set_times(tree: Path, epoch: int) -> None:
    for dirpath, dirs, files in os.walk(tree):
        for name in dirs + files:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(tree, (epoch, epoch))


def _base_image(
    store: Store, layer: Layer, tag: str | None, *, config: ContainerConfig, created: str, created_by: str,
    comment: str | None = None, instruction: str, message: str | None,
) -> Image:
    """A parentless one-layer image with one history entry, tagged `tag` (if given)."""
    image = store.write_image(
        parent=None,
        layers=[layer],
        config=config,
        history=[HistoryEntry(created_by=created_by, created=created, comment=comment)],
        created=created,
        instruction=instruction,
        message=message,
    )
    if tag:
        store.tag(image, tag, message=instruction)
    return image
