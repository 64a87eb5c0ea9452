"""What COPY and ADD can read: a directory seen through its ignore rules, never escaped.

A `SourceTree` is the build context (with `.dockerignore` applied, ownership reset to 0:0 as
BuildKit's context transfer does) or the root of a stage or image (`COPY --from`: nothing ignored,
ownership kept). It promises:
- An ignored path does not exist, exactly as if the context had been sent to a daemon: files that
  an ignore pattern excludes are absent, and an excluded directory is present only when an `!`
  exception brings back something inside it (it is walked only while that is possible).
- Every path is resolved inside the root: a leading `/` and `..` are clamped (F65), and symlinks
  are followed as if the root were `/`, so neither a source path nor a symlink in the tree can
  name anything outside it.
- Sources resolve as BuildKit's file op resolves them: wildcards with Go's `filepath.Match` over
  the tree (a matched directory is not searched further), top-level symlinks followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from builder import gomatch
from builder.ignore import MatchInfo, PatternMatcher
from layerstore.rootpath import PathEscape, resolve_parts
from pybuild.errors import NotFound, PybuildError


class SourceError(PybuildError):
    """A COPY/ADD source that cannot be used (a loop of links, a bad pattern, ...)."""


def clamp(path: str) -> str:
    """A source path made relative to the tree root, with `..` unable to climb above it:
    `/a/./b/` -> `a/b`, `../../x` -> `x`, `/` -> `` (the root itself)."""
    cleaned = gomatch.clean("/" + path)
    return cleaned.lstrip("/")


@dataclass(frozen=True)
class Entry:
    """One visible entry of a tree: its path relative to the root and its lstat result.
    `excluded` marks a directory that is ignored itself but holds re-included entries."""

    rel: str
    st: os.stat_result
    info: MatchInfo = field(default=MatchInfo(), compare=False)
    excluded: bool = False

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.st.st_mode)


@dataclass(frozen=True)
class Selected:
    """An entry chosen by `SourceTree.select`: `comp` is its path relative to the copied
    directory; `included` is False for a directory kept only for what may be inside it."""

    comp: str
    entry: Entry
    included: bool


class SourceTree:
    """A directory read by COPY/ADD. `ignore` is the build context's `.dockerignore` (None for
    stages and images); `reset_owner` makes every entry 0:0, as the context transfer does."""

    def __init__(
        self,
        root: Path,
        *,
        ignore: PatternMatcher | None = None,
        name: str = "build context",
        reset_owner: bool = False,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self._root = str(self.root)
        self.ignore = ignore if ignore else None
        self.name = name
        self.reset_owner = reset_owner
        self._infos: dict[str, tuple[bool, MatchInfo]] = {"": (False, MatchInfo())}
        self._has_visible: dict[str, bool] = {}

    def host(self, rel: str) -> Path:
        """The host path of a tree-relative path (no resolution; `rel` must come from here)."""
        return self.root / rel if rel else self.root

    def host_str(self, rel: str) -> str:
        """`host` as a string (for the hot paths that walk thousands of entries)."""
        return os.path.join(self._root, rel) if rel else self._root

    # -- ignore rules ---------------------------------------------------------------------

    def _match(self, rel: str) -> tuple[bool, MatchInfo]:
        """(excluded, match info) of `rel`, computed down from the root and remembered."""
        cached = self._infos.get(rel)
        if cached is not None:
            return cached
        if self.ignore is None:
            return False, MatchInfo()
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        _, parent_info = self._match(parent)
        result = self.ignore.matches_with_parent(rel, parent_info)
        self._infos[rel] = result
        return result

    def excluded(self, rel: str) -> bool:
        """True if the ignore rules exclude `rel` itself (it may still hold re-included entries)."""
        if self.ignore is None or not rel:
            return False
        return self._match(rel)[0]

    def _visible_below(self, rel: str) -> bool:
        """Whether an excluded directory holds anything an exception brings back."""
        known = self._has_visible.get(rel)
        if known is not None:
            return known
        found = False
        if self.ignore is not None and self.ignore.may_reinclude_below(rel):
            found = any(True for _ in self.children(rel))
        self._has_visible[rel] = found
        return found

    def visible(self, rel: str, st: os.stat_result | None = None) -> bool:
        """Whether `rel` (an existing path) is part of the tree as COPY sees it."""
        if not self.excluded(rel):
            # a path below an excluded directory is only reachable if that directory is visible
            return True
        if st is None:
            try:
                st = os.lstat(self.host(rel))
            except OSError:
                return False
        return stat.S_ISDIR(st.st_mode) and self._visible_below(rel)

    # -- walking --------------------------------------------------------------------------

    def children(self, rel: str) -> Iterator[Entry]:
        """The visible entries directly inside directory `rel`, sorted by name."""
        base = self.host_str(rel)
        try:
            with os.scandir(base) as it:
                names = sorted(e.name for e in it)  # any fixed order does: digests need one
        except FileNotFoundError:
            return
        except NotADirectoryError:
            return
        except OSError as e:
            raise SourceError(f"{self.name}: cannot read {rel or '.'}: {e.strerror}") from e
        for name in names:
            child = f"{rel}/{name}" if rel else name
            try:
                st = os.lstat(os.path.join(base, name))
            except FileNotFoundError:
                continue
            if self.ignore is None:
                yield Entry(child, st)
                continue
            excluded, info = self._match(child)
            if not excluded:
                yield Entry(child, st, info)
            elif stat.S_ISDIR(st.st_mode) and self._visible_below(child):
                yield Entry(child, st, info, excluded=True)

    def walk(self, rel: str) -> Iterator[Entry]:
        """Every visible entry below directory `rel`, parents before children, sorted per
        directory; symlinks are reported, never followed."""
        for entry in self.children(rel):
            yield entry
            if entry.is_dir:
                yield from self.walk(entry.rel)

    # -- resolving ------------------------------------------------------------------------

    def resolve(self, path: str, *, follow_final: bool = True) -> str:
        """The tree-relative path `path` names, following symlinks inside the tree.

        Components that do not exist (or are ignored) are taken literally, so the result may
        not exist; it is always inside the tree. Raises SourceError on a loop of links. The
        walk is the store's own (`layerstore.rootpath.resolve_parts`), over this tree as COPY
        sees it: an ignored entry is absent, exactly as a missing one.
        """

        def lstat(parts: list[str]) -> os.stat_result | None:
            return self.lstat("/".join(parts))

        def readlink(parts: list[str]) -> str:
            return os.readlink(self.host_str("/".join(parts)))

        try:
            return "/".join(resolve_parts(clamp(path), lstat=lstat, readlink=readlink, follow_final=follow_final))
        except PathEscape:
            raise SourceError(f"{path}: too many levels of symbolic links in the {self.name}") from None

    def lstat(self, rel: str) -> os.stat_result | None:
        """The lstat of a visible path, or None if it is missing or ignored."""
        try:
            st = os.lstat(self.host_str(rel))
        except (FileNotFoundError, NotADirectoryError):
            return None
        # Parent matching excludes everything below an excluded directory unless an exception
        # brings it back, so checking the path itself is enough.
        return st if self.visible(rel, st) else None

    def entry(self, path: str, *, follow: bool = True) -> Entry:
        """The entry a source path names (top-level symlinks followed when `follow`), or NotFound
        with the message BuildKit users know."""
        rel = self.resolve(path, follow_final=follow)
        st = self.lstat(rel)
        if st is None:
            where = f" or excluded by {self.ignore.file}" if self.ignore and self.ignore.file else ""
            raise NotFound(f'"{path}": not found in the {self.name}{where}')
        return Entry(rel, st)

    def glob(self, pattern: str) -> list[str]:
        """BuildKit's `ResolveWildcards`: the tree-relative paths a source with wildcards names,
        in walk order. The part before the first wildcard component is resolved (links
        followed); the rest is matched with `filepath.Match` against paths below it, and a
        matching directory is not searched further. A pattern without wildcards is returned
        as it is (clamped). No match is an empty list."""
        cleaned = clamp(pattern)
        parts = cleaned.split("/") if cleaned else []
        split = next((i for i, p in enumerate(parts) if gomatch.has_wildcards(p)), None)
        if split is None:
            return [cleaned]
        base = self.resolve("/".join(parts[:split]))
        rest = "/".join(parts[split:])
        try:
            gomatch.check(rest)
        except gomatch.BadPattern as e:
            raise SourceError(f"{pattern}: {e.message}") from e
        base_st = self.lstat(base)
        if base_st is None or not stat.S_ISDIR(base_st.st_mode):
            return []
        # `*` and `?` never cross a `/`, but a class can; no match lies deeper than this
        depth = rest.count("/") + rest.count("[") + 1
        out: list[str] = []
        self._glob_walk(base, "", rest, depth, out)
        return out

    def _glob_walk(self, base: str, sub: str, pattern: str, depth: int, out: list[str]) -> None:
        if depth == 0:
            return
        for entry in self.children(f"{base}/{sub}".strip("/") if sub else base):
            rel = entry.rel[len(base) + 1 :] if base else entry.rel
            if gomatch.match(pattern, rel):
                out.append(entry.rel)
                continue
            if entry.is_dir:
                self._glob_walk(base, rel, pattern, depth - 1, out)

    def select(
        self, top: Entry, *, include: PatternMatcher | None = None, exclude: PatternMatcher | None = None
    ) -> Iterator[Selected]:
        """What copying directory `top` copies: every visible entry below it, parents first,
        filtered by `include` (COPY --parents) and `exclude` (--exclude) patterns matched
        against paths relative to `top`. A directory that is not selected itself is still
        yielded (`included=False`) when something inside it may be; it is to be created only
        if something below it is. Subtrees no pattern can bring back are not walked."""
        yield from self._select(top.rel, "", include, None, exclude, None)

    def _select(
        self,
        rel: str,
        comp: str,
        include: PatternMatcher | None,
        inc: MatchInfo | None,
        exclude: PatternMatcher | None,
        exc: MatchInfo | None,
    ) -> Iterator[Selected]:
        for child in self.children(rel):
            child_comp = f"{comp}/{child.name}" if comp else child.name
            included, child_inc = True, inc
            if include is not None:
                included, child_inc = include.matches_with_parent(child_comp, inc)
            excluded, child_exc = False, exc
            if exclude is not None:
                excluded, child_exc = exclude.matches_with_parent(child_comp, exc)
            if child.is_dir:
                if excluded and not (exclude is not None and exclude.may_reinclude_below(child_comp)):
                    continue
                if not included and not (include is not None and include.may_include_below(child_comp)):
                    continue
                yield Selected(child_comp, child, included and not excluded)
                yield from self._select(child.rel, child_comp, include, child_inc, exclude, child_exc)
            elif included and not excluded:
                yield Selected(child_comp, child, True)

    def owner(self, st: os.stat_result) -> tuple[int, int]:
        """The uid and gid COPY gives an entry by default (before any --chown)."""
        if self.reset_owner:
            return 0, 0
        return st.st_uid, st.st_gid
