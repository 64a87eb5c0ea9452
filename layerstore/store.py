"""The Store: one object giving every area the store at a root (DESIGN.md sections 2-4).

    with Store.open(root) as store:              # shared store lock for the block
        base = store.resolve("busybox")
        lowers = store.lower_dirs(base)          # top first, for overlay lowerdir=
        image = store.commit(upper, parent=base, created_by="RUN make")
        store.tags.set("app:1", image.digest)

`Store.open` creates the layout if needed and holds the store lock (shared; `exclusive=True` for gc)
until the block ends. Everything written goes through `tmp/` on the same file system.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from layerstore.atomic import private_dir
from layerstore.blobs import Blobs
from layerstore.cache import BuildCache
from layerstore.digests import is_hex
from layerstore.images import Image, Images
from layerstore.layers import Layers
from layerstore.layout import Layout, ensure_layout
from layerstore.locks import store_lock
from layerstore.oci import ContainerConfig, HistoryEntry
from layerstore.reference import parse_reference
from layerstore.refs import Tags
from pybuild.errors import NotFound, ParseError, StoreError

MIN_ID_PREFIX = 4

# Hints for a file system failure in the store (full, read-only, no permission, failing disk).
_FILE_SYSTEM_HINTS = {
    errno.ENOSPC: "the store's file system is full; pybuild gc frees what nothing refers to",
    errno.EDQUOT: "the disk quota is exceeded; pybuild gc frees what nothing refers to",
    errno.EROFS: "the store is on a read-only file system: only reading commands work there",
    errno.EACCES: "run pybuild as a user who may write the store (or as root)",
    errno.EPERM: "run pybuild as a user who may write the store (or as root)",
    errno.EIO: "the disk reported an I/O error; pybuild fsck --full checks what the store holds",
}


@contextmanager
def _store_errors(root: Path) -> Iterator[None]:
    """Turn a file-system failure inside the block (a full or read-only disk, a permission, an I/O
    error) into one StoreError line naming the file, never a traceback. Every store write is
    atomic, so such a failure leaves nothing half-done behind."""
    try:
        yield
    except OSError as e:
        if e.errno not in _FILE_SYSTEM_HINTS:
            raise
        where = Path(os.fsdecode(e.filename)) if e.filename else root
        in_store = where == root or root in where.parents
        raise StoreError(f"{where}: {e.strerror}", hint=_FILE_SYSTEM_HINTS[e.errno] if in_store else None) from e


class Store:
    """The store at `root`. Construct with `Store.open` (which locks); `Store(root)` alone does no
    locking and is for code already holding the lock."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.layout = Layout(self.root)
        self.blobs = Blobs(self.layout)
        self.layers = Layers(self.layout, self.blobs)
        self.images = Images(self.layout, self.blobs, self.layers)
        self.tags = Tags(self.layout, self.blobs)
        self.cache = BuildCache(self.layout, self.blobs)
        # an image from a parent, new layers, config and history: `Images.write`, its signature kept
        self.write_image = self.images.write

    @classmethod
    @contextmanager
    def open(cls, root: Path, *, exclusive: bool = False, timeout: float | None = None) -> Iterator[Store]:
        """The store at `root` (created if missing) with the store lock held for the block."""
        root = Path(root)
        with _store_errors(root):
            root.mkdir(parents=True, exist_ok=True)
            with store_lock(root, exclusive=exclusive, timeout=timeout):
                ensure_layout(Layout(root))
                yield cls(root)

    @property
    def tmp(self) -> Path:
        return self.layout.tmp

    def mkdtemp(self, prefix: str = "work-") -> Path:
        """A new private directory under `tmp/` (same file system as the store: an upper dir made
        here can be committed with a rename). gc removes leftovers."""
        return private_dir(self.layout.tmp, prefix)

    # ------------------------------------------------------------------------------ images

    def resolve(self, name: str) -> Image:
        """The image `name` means: a tag (`busybox`, `app:1`, `localhost:5000/x:y`), a pinned digest
        (`app@sha256:...`), a manifest digest or image id (`sha256:...`, full or at least 4 hex
        characters of either). NotFound if nothing matches, StoreError if a short id is ambiguous."""
        name = name.strip()
        try:
            ref = parse_reference(name)
        except ParseError:
            ref = None
        if ref is not None and ref.digest is not None:
            if not self.images.exists(ref.digest):
                raise NotFound(f"image {name} not found")
            return self.images.get(ref.digest)
        if ref is not None:
            digest = self.tags.get(ref)
            if digest is not None:
                return self.images.get(digest)
        hex_ = name.removeprefix("sha256:")
        if len(hex_) >= MIN_ID_PREFIX and all(c in "0123456789abcdef" for c in hex_):
            if is_hex(hex_) and self.blobs.has("sha256:" + hex_) and self.images.commit("sha256:" + hex_):
                return self.images.get("sha256:" + hex_)
            matches = sorted(set(self.images.by_id_prefix(hex_)))
            if len(matches) == 1:
                return self.images.get(matches[0])
            if len(matches) > 1:
                raise StoreError(f"{name}: ambiguous image id prefix ({len(matches)} images match)", hint="give more characters")
        raise NotFound(f"image {name} not found", hint="see 'pybuild images'")

    def lower_dirs(self, image: Image) -> list[Path]:
        """The image's layers as overlay lower dirs, top first (`lowerdir=` order), unpacking any
        that are not unpacked yet."""
        return [self.layers.unpack(layer) for layer in reversed(image.layers)]

    def commit(
        self,
        upper: Path,
        *,
        parent: Image | None,
        created_by: str,
        config: ContainerConfig | None = None,
        comment: str | None = None,
        author: str | None = None,
        created: str | None = None,
        message: str | None = None,
        cache_key: str | None = None,
        compression: str = "zstd",
        source_date_epoch: int | None = None,
        consume: bool = True,
    ) -> Image:
        """Commit `upper` (an overlay upper dir, or any dir) as one layer on top of `parent` and
        write the new image with one history entry `created_by` and its commit record. The upper is
        consumed (renamed into `unpacked/`) unless `consume=False`. Nothing is tagged."""
        layer = self.layers.commit_dir(upper, compression=compression, source_date_epoch=source_date_epoch, consume=consume)
        return self.write_image(
            parent=parent,
            layers=[layer],
            config=config,
            history=[HistoryEntry(created_by=created_by, created=created, comment=comment, author=author)],
            created=created,
            instruction=created_by,
            message=message,
            cache_key=cache_key,
        )

    def tag(self, image: Image | str, name: str, *, message: str = "tag") -> str | None:
        """Point tag `name` at `image` (an Image or manifest digest); returns the previous digest."""
        digest = image if isinstance(image, str) else image.digest
        return self.tags.set(name, digest, message=message)
