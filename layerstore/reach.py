"""What the store must keep: the roots (tags, build-cache entries, containers) and everything an
image reaches (mark), as git's reachability. gc sweeps what is not reached; fsck holds what is
reached to the strictest checks; `rmi` deletes what only the removed image reached.

From an image we reach its manifest, config and layer blobs, the other stored compressions of its
layers (`layers/<diff>.json`), its unpacked layers, and its commit chain (parents), as git keeps a
branch's ancestors. The rule agreed with the runner: `containers/<id>/state.json` names its image's
manifest digest as `"image_digest"` (the key `"image"` is also read when it holds a digest); as long
as the directory exists, that image and everything it needs stay.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from layerstore.digests import is_digest
from layerstore.lazylog import Logger
from layerstore.store import Store
from pybuild.errors import PybuildError

log = Logger(__name__)


@dataclass
class Live:
    """What a set of images reaches: manifest digests, blob digests, layer diff_ids."""

    manifests: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    diff_ids: set[str] = field(default_factory=set)
    unreadable: set[str] = field(default_factory=set)  # manifests named but not readable (fsck says why)


def container_images(store: Store) -> dict[str, str]:
    """container id -> image manifest digest, from `containers/<id>/state.json`."""
    out: dict[str, str] = {}
    root = store.layout.containers
    if not root.is_dir():
        return out
    for entry in sorted(os.listdir(root)):
        try:
            doc = json.loads((root / entry / "state.json").read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        for key in ("image_digest", "image"):
            value = doc.get(key)
            if isinstance(value, str) and is_digest(value):
                out[entry] = value
                break
    return out


def containers_using(store: Store, manifest_digest: str) -> list[str]:
    """Ids of the containers whose image is `manifest_digest`."""
    return [cid for cid, digest in container_images(store).items() if digest == manifest_digest]


def roots(store: Store, *, include_cache: bool = True, except_images: Iterable[str] = ()) -> set[str]:
    """The manifest digests everything else is kept for: tagged images, build-cache entries (unless
    `include_cache` is false; entries naming `except_images` are left out) and containers' images."""
    skip = set(except_images)
    found = {t.digest for t in store.tags.all()}
    if include_cache:
        found |= {digest for _key, digest in store.cache.items() if is_digest(digest) and digest not in skip}
    found |= set(container_images(store).values())
    return found


def mark(store: Store, start: Iterable[str]) -> Live:
    """Everything the images `start` (manifest digests) reach. A damaged or missing image is kept by
    its name only (fsck reports it)."""
    live = Live()
    pending = list(start)
    while pending:
        digest = pending.pop()
        if digest in live.manifests:
            continue
        live.manifests.add(digest)
        live.blobs.add(digest)
        try:
            image = store.images.get(digest)
        except PybuildError as e:
            log.info("cannot read image %s: %s", digest, e)
            live.unreadable.add(digest)
            continue
        live.blobs.add(image.id)
        for layer in image.layers:
            live.blobs.add(layer.digest)
            live.diff_ids.add(layer.diff_id)
            try:
                doc = json.loads(store.layout.layer_record(layer.diff_id).read_bytes())
                live.blobs.update(b["digest"] for b in doc.get("blobs", []) if is_digest(b.get("digest", "")))
            except (OSError, ValueError, AttributeError, TypeError):
                pass
        if image.parent and is_digest(image.parent):
            pending.append(image.parent)
    return live


def children(store: Store, manifest_digest: str) -> list[str]:
    """Manifest digests of the stored images whose parent is `manifest_digest`."""
    return [r.manifest for r in store.images.all_commits() if r.parent == manifest_digest]
