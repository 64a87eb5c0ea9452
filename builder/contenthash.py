"""Content digests of COPY/ADD sources, for cache keys, and the stat cache that makes them cheap.

A source digest covers, for the source and everything visible below it: the relative path, the
file type, the permission bits, the ownership COPY gives it, the bytes of regular files, the
targets of symlinks, device numbers, extended attributes, and which files are hard links of one
another. It never covers times: `touch` keeps the digest, while new bytes change it even when the
size and mtime are put back.

Hashing 200 MB on every build would make a cached rebuild slow, so a file's digest is remembered
with the (dev, inode, size, mtime_ns, ctime_ns) it had when it was read. A change of content
always changes ctime (which no user can set), so an entry whose five values still match is
trusted, with one exception: a file changed within the same timestamp tick as the read (the
"racy git" case) would keep its ctime. Entries whose ctime is not comfortably older than the
moment the file was read are therefore never trusted, only refreshed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.context import Entry, Selected, SourceTree
from builder.ignore import PatternMatcher
from layerstore.atomic import atomic_write
from layerstore.layer_tar import xattrs_of
from layerstore.lazylog import Logger

log = Logger(__name__)

STATCACHE_VERSION = 1
# How much older than the read a file's ctime must be for its entry to be trusted: a few clock
# ticks where timestamps have sub-second precision, more where the filesystem rounds to seconds.
_RACY_NS = 50_000_000
_RACY_COARSE_NS = 2_000_000_000
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Stamp:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> _Stamp:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StatCache:
    """Remembered file digests for one tree, optionally persisted in one file.

    `lookup` answers only for entries it can trust; `record` adds or replaces one; `save`
    writes the file atomically if anything changed. Losing or corrupting the file only costs
    re-hashing. Not thread-safe; one per build and tree.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, tuple[_Stamp, int, str]] = {}
        self._dirty = False
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.debug("ignoring unreadable stat cache %s: %s", path, e)
            return
        if not isinstance(doc, dict) or doc.get("v") != STATCACHE_VERSION:
            return
        for rel, row in doc.get("entries", {}).items():
            try:
                dev, ino, size, mtime, ctime, read_at, digest = row
                self._entries[rel] = (_Stamp(dev, ino, size, mtime, ctime), int(read_at), str(digest))
            except (TypeError, ValueError):
                continue

    def lookup(self, rel: str, st: os.stat_result) -> str | None:
        """The remembered digest of `rel` if its stat still matches and is not racy."""
        row = self._entries.get(rel)
        if row is None:
            return None
        stamp, read_at, digest = row
        if stamp != _Stamp.of(st):
            return None
        margin = _RACY_COARSE_NS if st.st_ctime_ns % 1_000_000_000 == 0 else _RACY_NS
        if st.st_ctime_ns >= read_at - margin:
            return None
        return digest

    def record(self, rel: str, st: os.stat_result, read_at_ns: int, digest: str) -> None:
        """Remember `digest` for `rel` as read at `read_at_ns` (time.time_ns() before reading)."""
        self._entries[rel] = (_Stamp.of(st), read_at_ns, digest)
        self._dirty = True

    def save(self) -> None:
        """Persist the cache if it changed (atomic; a concurrent writer's copy may win)."""
        if self.path is None or not self._dirty:
            return
        rows = {
            rel: [s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns, read_at, digest]
            for rel, (s, read_at, digest) in self._entries.items()
        }
        data = json.dumps({"v": STATCACHE_VERSION, "entries": rows}, separators=(",", ":")).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, data)
        self._dirty = False


def statcache_path(store_root: Path, tree_root: Path) -> Path:
    """Where the stat cache of a context directory lives in a store: one file per directory."""
    key = hashlib.sha256(os.fsencode(os.path.abspath(tree_root))).hexdigest()
    return store_root / "cache" / "contenthash" / f"{key}.json"


class Hasher:
    """Computes source digests over one SourceTree, using and refreshing a StatCache."""

    def __init__(
        self, tree: SourceTree, cache: StatCache | None = None, *, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.tree = tree
        self.cache = cache if cache is not None else StatCache()
        self.clock = clock  # wall-clock ns, the same clock file timestamps come from
        self.files_read = 0  # how many files had to be read (for tests and --debug)

    def digest(
        self, entry: Entry, *, include: PatternMatcher | None = None, exclude: PatternMatcher | None = None
    ) -> str:
        """`sha256:<hex>` of `entry` and, for a directory, of what copying it copies (all that is
        visible below it, filtered by `include`/`exclude` as COPY filters it).

        The entry itself is recorded as `.`, so the digest does not depend on its name or on
        where it is in the tree (the cache key records names separately).
        """
        h = hashlib.sha256()
        links: dict[tuple[int, int], str] = {}
        self._add(h, ".", entry, links)
        if entry.is_dir:
            pending: list[Selected] = []  # directories counted only once something inside is
            for sel in self.tree.select(entry, include=include, exclude=exclude):
                while pending and not sel.comp.startswith(pending[-1].comp + "/"):
                    pending.pop()
                if sel.entry.is_dir and not sel.included:
                    pending.append(sel)
                    continue
                for parent in pending:
                    self._add(h, parent.comp, parent.entry, links)
                pending.clear()
                self._add(h, sel.comp, sel.entry, links)
        return "sha256:" + h.hexdigest()

    def _add(self, h: Any, rel: str, entry: Entry, links: dict[tuple[int, int], str]) -> None:
        st = entry.st
        mode = st.st_mode
        uid, gid = self.tree.owner(st)
        if stat.S_ISREG(mode):
            kind = "f"
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                payload = "hardlink=" + links[key]
            else:
                if st.st_nlink > 1:
                    links[key] = rel
                payload = self._file_digest(entry)
        elif stat.S_ISDIR(mode):
            kind, payload = "d", self._xattrs(entry)
        elif stat.S_ISLNK(mode):
            kind, payload = "l", os.readlink(self.tree.host_str(entry.rel))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = "c" if stat.S_ISCHR(mode) else "b"
            payload = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
        elif stat.S_ISFIFO(mode):
            kind, payload = "p", ""
        else:
            kind, payload = "s", ""
        record = f"{rel}\0{kind}\0{stat.S_IMODE(mode):o}\0{uid}\0{gid}\0{payload}\0"
        # No field can hold a NUL byte and every record has six, so this encoding is unambiguous.
        h.update(record.encode("utf-8", "surrogateescape"))

    def _file_digest(self, entry: Entry) -> str:
        cached = self.cache.lookup(entry.rel, entry.st)
        if cached is not None:
            return cached
        read_at = self.clock()
        h = hashlib.sha256()
        path = self.tree.host(entry.rel)
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        self.files_read += 1
        digest = h.hexdigest() + self._xattrs(entry)
        if _Stamp.of(st) == _Stamp.of(entry.st):
            self.cache.record(entry.rel, st, read_at, digest)
        return digest

    def _xattrs(self, entry: Entry) -> str:
        """The extended attributes COPY carries over (the ones a layer keeps), as text (empty
        when there are none)."""
        kept = xattrs_of(os.fsencode(self.tree.host_str(entry.rel)))
        return (";xattr:" + ",".join(f"{name}={value.hex()}" for name, value in kept)) if kept else ""
