"""fsck: check the store's objects and references, as `git fsck` does. It changes nothing.

Errors (the store is damaged): a blob whose content does not hash to its name; a tag, commit record
or cache entry naming a missing or unreadable image; a manifest whose config or layers are missing
or of the wrong size; a history that breaks the layer invariant; a commit whose parent is missing;
with `full`, a layer whose uncompressed content does not hash to its diff_id.
Warnings (harmless, and `gc` tidies them): index.json behind the refs (a tag change was interrupted
before index.json was rewritten), temp leftovers of killed processes, dangling cache entries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from layerstore.digests import is_digest, is_hex
from layerstore.images import Image
from layerstore.store import Store
from pybuild.errors import PybuildError


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" or "warning"
    message: str


def check(store: Store, *, full: bool = False) -> list[Problem]:
    """Every problem found, errors and warnings, in a stable order."""
    return list(_check(store, full))


def _check(store: Store, full: bool) -> Iterator[Problem]:
    layout = store.layout
    damaged: set[str] = set()
    for name in sorted(os.listdir(layout.blobs)):
        if not is_hex(name):
            if not name.startswith("."):
                yield Problem("warning", f"blobs/sha256/{name}: not a digest name")
            continue
        try:
            store.blobs.verify("sha256:" + name)
        except PybuildError as e:
            damaged.add("sha256:" + name)
            yield Problem("error", str(e))

    checked_layers: set[str] = set()
    images: dict[str, Image] = {}

    def image(digest: str, what: str) -> Iterator[Problem]:
        if digest in images:
            return
        if digest in damaged:
            yield Problem("error", f"{what}: manifest {digest} is damaged")
            return
        if not store.blobs.has(digest):
            yield Problem("error", f"{what}: manifest {digest} is missing")
            return
        try:
            img = store.images.get(digest)
        except PybuildError as e:
            yield Problem("error", f"{what}: {e}")
            return
        images[digest] = img
        for layer in img.layers:
            if not store.blobs.has(layer.digest):
                yield Problem("error", f"image {digest}: layer {layer.digest} is missing")
                continue
            size = store.blobs.size(layer.digest)
            if size != layer.size:
                yield Problem("error", f"image {digest}: layer {layer.digest} is {size} bytes, manifest says {layer.size}")
                continue
            if full and layer.digest not in checked_layers and layer.digest not in damaged:
                checked_layers.add(layer.digest)
                try:
                    with store.layers.open_tar(layer):
                        pass  # the block's end reads the rest and checks digest and diff_id
                except PybuildError as e:
                    yield Problem("error", f"image {digest}: {e}")

    for name in sorted(os.listdir(layout.commits)):
        if not is_hex(name):
            continue
        digest = "sha256:" + name
        try:
            record = store.images.commit(digest)
        except PybuildError as e:
            yield Problem("error", str(e))
            continue
        if record is None:
            continue
        yield from image(digest, f"commit {digest}")
        if digest in images and images[digest].id != record.config:
            yield Problem("error", f"commit {digest}: records config {record.config}, manifest has {images[digest].id}")
        if record.parent and not store.images.exists(record.parent):
            yield Problem("error", f"commit {digest}: parent {record.parent} is missing")

    tag_dir = layout.tags
    for dirpath, _dirs, files in os.walk(tag_dir):
        for f in sorted(files):
            if f.endswith(".lock"):
                yield Problem("warning", f"{os.path.relpath(os.path.join(dirpath, f), layout.root)}: lock left by an interrupted tag change")
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), layout.root)
            value = open(os.path.join(dirpath, f)).read().strip()
            if not is_digest(value):
                yield Problem("error", f"{rel}: does not hold a digest")
                continue
            yield from image(value, rel)

    for key, digest in store.cache.items():
        if not is_digest(digest) or not store.blobs.has(digest):
            yield Problem("warning", f"cache/{key}: names missing image {digest[:80]}")
        else:
            yield from image(digest, f"cache/{key}")

    if not store.tags.index_is_current():
        yield Problem("warning", "index.json does not match refs/ (an interrupted tag change; the next tag, rmi or gc rewrites it)")
    leftovers = os.listdir(layout.tmp)
    if leftovers:
        yield Problem("warning", f"tmp/: {len(leftovers)} leftover temp entries (gc removes them)")
