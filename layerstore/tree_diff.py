"""What changed between two images' file systems: paths added, changed and deleted.

Each image's merged tree is computed from its layer tars alone (no unpacking, no mounts), applying
whiteouts and opaque directories as overlayfs would; a file's content is compared by the sha256 of
its bytes, so an edit that keeps size and mtime still shows. Memory grows with the number of paths,
not with the size of the files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from layerstore.images import Image
from layerstore.layer_tar import OPAQUE_MARKER, WHITEOUT_PREFIX
from layerstore.store import Store
from layerstore.tar_format import HARDLINK, REGULAR, TarReader


@dataclass(frozen=True)
class Meta:
    type: bytes
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    link: bytes
    content: str


@dataclass(frozen=True)
class Change:
    kind: str  # "A", "C" or "D", as docker diff prints them
    path: str


def merged_tree(store: Store, image: Image | None) -> dict[bytes, Meta]:
    """path (b"/etc/passwd") -> metadata of the image's merged file system."""
    tree: dict[bytes, Meta] = {}
    if image is None:
        return tree
    for layer in image.layers:
        added: dict[bytes, Meta] = {}
        deleted: list[bytes] = []
        opaque: list[bytes] = []
        with store.layers.open_tar(layer) as stream:
            reader = TarReader(stream)
            for e in reader:
                path = b"/" + b"/".join(p for p in e.name.split(b"/") if p not in (b"", b"."))
                parent, _, base = path.rpartition(b"/")
                if base == OPAQUE_MARKER:
                    opaque.append(parent or b"/")
                    continue
                if base.startswith(WHITEOUT_PREFIX):
                    deleted.append((parent or b"") + b"/" + base[len(WHITEOUT_PREFIX):])
                    continue
                if e.type == HARDLINK:
                    target = b"/" + e.linkname.strip(b"/")
                    source = added.get(target) or tree.get(target)
                    if source is not None:
                        added[path] = source
                    continue
                content = ""
                if e.type == REGULAR:
                    h = hashlib.sha256()
                    for chunk in reader.data():
                        h.update(chunk)
                    content = h.hexdigest()
                added[path] = Meta(e.type, e.mode, e.uid, e.gid, e.mtime, e.size, e.linkname, content)
        for d in opaque:
            prefix = d.rstrip(b"/") + b"/"
            for p in [p for p in tree if p.startswith(prefix)]:
                del tree[p]
        for gone in deleted:
            prefix = gone + b"/"
            for p in [p for p in tree if p == gone or p.startswith(prefix)]:
                del tree[p]
        tree.update(added)
    return tree


def diff_trees(old: dict[bytes, Meta], new: dict[bytes, Meta]) -> list[Change]:
    """Pure: the changes from `old` to `new`, sorted by path."""
    changes = []
    for path in sorted(old.keys() | new.keys()):
        shown = path.decode("utf-8", "backslashreplace")
        if path not in old:
            changes.append(Change("A", shown))
        elif path not in new:
            changes.append(Change("D", shown))
        elif old[path] != new[path]:
            changes.append(Change("C", shown))
    return changes


def diff_images(store: Store, old: Image | None, new: Image) -> list[Change]:
    return diff_trees(merged_tree(store, old), merged_tree(store, new))
