"""Garbage collection: mark from the roots (layerstore.reach), sweep what is unreachable and older
than a grace period; and `delete_images`, the sweep `rmi` does for the images it removes.

gc runs under the exclusive store lock, so no other pybuild process is between writing an object and
referencing it; the grace period (by the later of mtime and ctime) also protects objects that a
process working without the lock has just written. Everything in `tmp/` older than the grace period
is an orphan of a dead process (its owner's shared lock is gone) and is removed.

What gc knows beside images (policy, see docs/readme/store.md):
- the builder's files under `cache/`: a context's stat cache (`cache/contenthash/`) and the last
  build's step inputs (`cache/explain/`) only make builds faster or better explained, and are
  dropped when nobody has written them for BUILD_FILES_MAX_AGE (or the grace period, whichever is
  longer), or with the build cache (`prune_cache`); `RUN --mount=type=cache` directories
  (`cache/mounts/`) hold what a user chose to keep between builds and go only when asked
  (`cache_mounts`); temp leftovers in all three go after the grace period;
- containers: a container's image is a root while its directory exists; a container directory
  without `state.json` (its creation was killed before the record was written) is removed after
  the grace period, unless something is mounted below it. Named volumes are never touched.

Sweep order: references before what they name (build-cache entries and index.json, commit records,
layer records, unpacked layers, then blobs), so a gc killed half-way leaves only objects that
nothing names: fsck passes, and the next gc finishes the job.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from layerstore.digests import is_digest, is_hex
from layerstore.layers import remove_tree
from layerstore.locks import is_stale
from layerstore.reach import mark, roots
from layerstore.store import Store
from pybuild.errors import PybuildError

DEFAULT_GRACE_SECONDS = 3600
BUILD_FILES_MAX_AGE = 7 * 24 * 3600
BUILD_FILE_DIRS = ("contenthash", "explain")


@dataclass
class Freed:
    """What a gc (or an rmi) removed, or with dry_run would remove. `bytes` is the disk space of
    all of it (hardlinked files once); `deleted_images` the ids of images whose manifest went."""

    blobs: int = 0
    commits: int = 0
    layer_records: int = 0
    unpacked: int = 0
    cache_entries: int = 0
    tmp_entries: int = 0
    build_files: int = 0
    cache_mounts: int = 0
    containers: int = 0
    bytes: int = 0
    items: list[str] = field(default_factory=list)
    deleted_images: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Doomed:
    counter: str  # the Freed field it counts in ("" for none)
    label: str
    path: Path


def collect(
    store: Store,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    prune_cache: bool = False,
    cache_mounts: bool = False,
    dry_run: bool = False,
) -> Freed:
    """Remove what no root reaches and is older than `grace_seconds`. The caller holds the
    exclusive store lock (`Store.open(root, exclusive=True)`)."""
    now = time.time()

    def old(path: Path, age: float = grace_seconds, *, written: bool = False) -> bool:
        return _age(path, now, written=written) >= age

    layout = store.layout
    doomed = [
        _Doomed("cache_entries", f"cache entry {key}", layout.cache / key)
        for key, digest in store.cache.items()
        if prune_cache or not is_digest(digest) or not store.blobs.has(digest)
    ]
    live = mark(store, roots(store, include_cache=not prune_cache))
    if not dry_run:
        store.tags.write_index()  # before the sweep: a stale index.json may name what goes
    doomed += _unreached(store, live.manifests, live.diff_ids, live.blobs, old)
    doomed += [_Doomed("tmp_entries", f"temp {n}", layout.tmp / n) for n in sorted(os.listdir(layout.tmp)) if old(layout.tmp / n)]
    doomed += _builder_files(store, old, prune_cache=prune_cache, cache_mounts=cache_mounts)
    doomed += _unfinished_containers(store, old)
    doomed += [
        _Doomed("", f"stale lock {lock.relative_to(layout.root)}", lock)
        for lock in lock_files(layout.root)
        if old(lock) and is_stale(lock, min_age=0)
    ]
    freed = Freed()
    _sweep(store, doomed, freed, dry_run)
    return freed


def delete_images(store: Store, digests: Iterable[str]) -> Freed:
    """Delete the images `digests` (manifest digests), as `docker rmi` does once an image has no
    tag left: each image, the build-cache entries naming it, and whatever of its objects and
    untagged ancestors nothing else reaches. An image that something else still needs (a tag, a
    child image, a container, another cache entry) stays. `deleted_images` lists the ids of the
    images deleted, each image before its parents. The caller holds the exclusive store lock."""
    targets = list(dict.fromkeys(digests))
    store.tags.write_index()  # a stale index.json may name what goes
    live = mark(store, roots(store, except_images=targets))
    reached = mark(store, targets)
    gone = reached.manifests - live.manifests
    order = _chain_order(store, targets, gone)
    layout = store.layout
    doomed = [_Doomed("cache_entries", f"cache entry {key}", layout.cache / key)
              for key, digest in store.cache.items() if digest in gone]
    doomed += _unreached(store, live.manifests, live.diff_ids, live.blobs, lambda _p: True,
                         only=(gone, reached.diff_ids, reached.blobs))
    freed = Freed(deleted_images=[image_id for _digest, image_id in order])
    _sweep(store, doomed, freed, dry_run=False)
    return freed


def _chain_order(store: Store, targets: list[str], gone: set[str]) -> list[tuple[str, str]]:
    """(manifest digest, image id) of the images in `gone`, each target followed by its parents."""
    out: dict[str, str] = {}
    for digest in targets:
        current: str | None = digest
        while current and current in gone and current not in out:
            record = store.images.commit(current)
            try:
                out[current] = record.config if record else store.images.get(current).id
            except PybuildError:
                out[current] = current
            current = record.parent if record else None
    return list(out.items())


def _unreached(
    store: Store,
    manifests: set[str],
    diff_ids: set[str],
    blobs: set[str],
    old: Callable[[Path], bool],
    *,
    only: tuple[set[str], set[str], set[str]] | None = None,
) -> list[_Doomed]:
    """Commit records, layer records, unpacked layers and blobs (in that order) that are not live
    (and, with `only`, among the given manifests, diff_ids and blobs) and are old."""
    layout = store.layout
    among_manifests, among_diff_ids, among_blobs = only or (None, None, None)
    kinds = [
        (layout.commits, manifests, among_manifests, "commits", "commit sha256:"),
        (layout.layers, diff_ids, among_diff_ids, "layer_records", "layer record "),
        (layout.unpacked, diff_ids, among_diff_ids, "unpacked", "unpacked layer "),
        (layout.blobs, blobs, among_blobs, "blobs", "blob sha256:"),
    ]
    out = []
    for directory, live, among, counter, label in kinds:
        for name in sorted(os.listdir(directory)):
            hex_ = name.split(".")[0]
            if not is_hex(hex_):
                continue  # not ours (a foreign file): left alone
            digest = "sha256:" + hex_
            if digest in live or (among is not None and digest not in among) or not old(directory / name):
                continue
            out.append(_Doomed(counter, label + name, directory / name))
    return out


def _builder_files(store: Store, old: Callable[..., bool], *, prune_cache: bool, cache_mounts: bool) -> list[_Doomed]:
    """The builder's files under `cache/` that the policy above removes. Their age is their mtime:
    the builder rewrites a stat cache or an explanation whole when it changes."""
    cache = store.layout.cache
    out = []
    for sub in BUILD_FILE_DIRS:
        directory = cache / sub
        for name in _listdir(directory):
            path = directory / name
            temp = name.startswith(".") and name.endswith(".tmp")
            age = 0 if temp or prune_cache else BUILD_FILES_MAX_AGE
            stale = old(path, written=True) and old(path, age, written=True)
            if stale:
                out.append(_Doomed("tmp_entries" if temp else "build_files", f"build file {sub}/{name}", path))
    mounts = cache / "mounts"
    for name in _listdir(mounts):
        path = mounts / name
        if cache_mounts and _unlocked(path / "lock"):
            out.append(_Doomed("cache_mounts", f"cache mount {name}", path))
            continue
        out += [_Doomed("tmp_entries", f"temp mounts/{name}/{n}", path / n)
                for n in _listdir(path) if n.startswith(".new-") and old(path / n, written=True)]
    return out


def _unfinished_containers(store: Store, old: Callable[[Path], bool]) -> list[_Doomed]:
    root = store.layout.containers
    mounted = _mount_points()
    out = []
    for name in _listdir(root):
        path = root / name
        if not path.is_dir() or (path / "state.json").exists() or not old(path):
            continue
        if any(m == str(path) or m.startswith(f"{path}/") for m in mounted):
            continue
        out.append(_Doomed("containers", f"unfinished container {name}", path))
    return out


def _sweep(store: Store, doomed: list[_Doomed], freed: Freed, dry_run: bool) -> None:
    for d in doomed:
        if not os.path.lexists(d.path):
            continue
        size = _disk_usage(d.path)
        freed.bytes += size
        if d.counter:
            setattr(freed, d.counter, getattr(freed, d.counter) + 1)
        freed.items.append(d.label)
        if dry_run:
            continue
        if d.path.is_dir() and not d.path.is_symlink():
            remove_tree(d.path, store.layout.tmp)
        else:
            d.path.unlink(missing_ok=True)


def _age(path: Path, now: float, *, written: bool = False) -> float:
    """Seconds since `path` was last written (`written`: its mtime, for files rewritten whole when
    used) or put in place (the later of mtime and ctime: a rename or link sets the ctime only)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0.0
    return now - (st.st_mtime if written else max(st.st_mtime, st.st_ctime))


def _disk_usage(path: Path) -> int:
    """Bytes of disk `path` uses (a tree: every inode once, as `du` counts hardlinks)."""
    st = os.lstat(path)
    total = st.st_blocks * 512
    if not os.path.isdir(path) or os.path.islink(path):
        return total
    seen: set[tuple[int, int]] = set()
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                s = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if (s.st_dev, s.st_ino) not in seen:
                seen.add((s.st_dev, s.st_ino))
                total += s.st_blocks * 512
    return total


def _listdir(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _unlocked(lock: Path) -> bool:
    """True unless a build holds the cache mount's lock file (shared or exclusive)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _mount_points() -> list[str]:
    """Every mount point of this mount namespace (mountinfo's fifth field, octal escapes undone)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) > 4:
            out.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4]))
    return out


def lock_files(root: Path) -> list[Path]:
    """Ref-lock files (`<ref>.lock`) left by killed processes: under refs/, layers/, index.json."""
    found = [p for p in (root / "index.json.lock",) if p.exists()]
    for top in ("refs", "layers", "logs"):
        for dirpath, _dirs, files in os.walk(root / top):
            found += [Path(dirpath, f) for f in files if f.endswith(".lock")]
    return sorted(found)
