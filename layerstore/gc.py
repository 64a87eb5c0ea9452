"""Garbage collection: mark from the roots, sweep what is unreachable and older than a grace period.

Roots: every tag, every build-cache entry, and every container's image. The rule agreed with the
runner: `containers/<id>/state.json` names its image's manifest digest as `"image_digest"` (the
key `"image"` is also read when it holds a digest); as long as the directory exists, that image and
everything it needs stay. From each root image we mark its manifest, config and layer blobs, the
other stored compressions of its layers (`layers/<diff>.json`), its unpacked layers, and its commit
chain (parents), as git keeps a branch's ancestors.

gc runs under the exclusive store lock, so no other pybuild process is between writing an object and
referencing it; the grace period (by the later of mtime and ctime) also protects objects that a
process working without the lock has just written. Everything in `tmp/` older than the grace period
is an orphan of a dead process (its owner's shared lock is gone) and is removed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from layerstore.digests import is_digest, is_hex
from layerstore.layers import remove_tree
from layerstore.locks import is_stale
from layerstore.store import Store
from pybuild.errors import PybuildError

log = logging.getLogger(__name__)
DEFAULT_GRACE_SECONDS = 3600


@dataclass
class Freed:
    """What a gc removed (or, with dry_run, would remove)."""

    blobs: int = 0
    blob_bytes: int = 0
    commits: int = 0
    layer_records: int = 0
    unpacked: int = 0
    cache_entries: int = 0
    tmp_entries: int = 0
    items: list[str] = field(default_factory=list)


@dataclass
class Live:
    manifests: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    diff_ids: set[str] = field(default_factory=set)


def container_images(store: Store) -> dict[str, str]:
    """container id -> image manifest digest, from `containers/<id>/state.json`."""
    out = {}
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


def roots(store: Store, *, include_cache: bool = True) -> set[str]:
    found = {t.digest for t in store.tags.all()}
    if include_cache:
        found |= {digest for _key, digest in store.cache.items() if is_digest(digest)}
    found |= set(container_images(store).values())
    return found


def mark(store: Store, start: set[str]) -> Live:
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
        except PybuildError as e:  # damaged or missing: keep what we can name, fsck reports it
            log.info("gc: cannot read image %s: %s", digest, e)
            continue
        live.blobs.add(image.id)
        for layer in image.layers:
            live.blobs.add(layer.digest)
            live.diff_ids.add(layer.diff_id)
            record = store.layout.layer_record(layer.diff_id)
            try:
                doc = json.loads(record.read_bytes())
                live.blobs.update(b["digest"] for b in doc.get("blobs", []) if is_digest(b.get("digest", "")))
            except (OSError, ValueError, AttributeError, TypeError):
                pass
        if image.parent and is_digest(image.parent):
            pending.append(image.parent)
    return live


def _age(path: Path, now: float) -> float:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0.0
    return now - max(st.st_mtime, st.st_ctime)


def collect(store: Store, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, prune_cache: bool = False, dry_run: bool = False) -> Freed:
    """Remove what no root reaches and is older than `grace_seconds`. The caller holds the
    exclusive store lock (`Store.open(root, exclusive=True)`)."""
    now = time.time()
    freed = Freed()
    layout = store.layout

    def old(path: Path) -> bool:
        return _age(path, now) >= grace_seconds

    for key, digest in list(store.cache.items()):
        if prune_cache or not is_digest(digest) or not store.blobs.has(digest):
            freed.cache_entries += 1
            freed.items.append(f"cache entry {key}")
            if not dry_run:
                store.cache.delete(key)
    live = mark(store, roots(store, include_cache=not prune_cache))

    def sweep(directory: Path, is_live: Callable[[str], bool], counter: str, label: str) -> None:
        """Remove every entry of `directory` that `is_live(name)` rejects and that is old."""
        for name in sorted(os.listdir(directory)):
            path = directory / name
            if is_live(name) or not old(path):
                continue
            setattr(freed, counter, getattr(freed, counter) + 1)
            if counter == "blobs":
                freed.blob_bytes += path.stat().st_size
            freed.items.append(label + name)
            if dry_run:
                continue
            if path.is_dir() and not path.is_symlink():
                remove_tree(path, layout.tmp)
            else:
                path.unlink(missing_ok=True)

    def digest_in(names: set[str]) -> Callable[[str], bool]:
        # names that are not digests (foreign files) are left alone
        return lambda name: not is_hex(name.split(".")[0]) or "sha256:" + name.split(".")[0] in names

    sweep(layout.blobs, digest_in(live.blobs), "blobs", "blob sha256:")
    sweep(layout.commits, digest_in(live.manifests), "commits", "commit sha256:")
    sweep(layout.layers, digest_in(live.diff_ids), "layer_records", "layer record ")
    sweep(layout.unpacked, digest_in(live.diff_ids), "unpacked", "unpacked layer ")
    sweep(layout.tmp, lambda name: False, "tmp_entries", "temp ")
    for lock in _lock_files(layout.root):
        if old(lock) and is_stale(lock, min_age=0):
            freed.items.append(f"stale lock {lock.relative_to(layout.root)}")
            if not dry_run:
                lock.unlink(missing_ok=True)
    if not dry_run:
        store.tags.write_index()
    return freed


def _lock_files(root: Path) -> list[Path]:
    """Ref-lock files (`<ref>.lock`) left by killed processes: under refs/, layers/, index.json."""
    found = [p for p in (root / "index.json.lock",) if p.exists()]
    for top in ("refs", "layers", "logs"):
        for dirpath, _dirs, files in os.walk(root / top):
            found += [Path(dirpath, f) for f in files if f.endswith(".lock")]
    return sorted(found)
