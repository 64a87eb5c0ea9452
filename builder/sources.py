"""One COPY or ADD instruction's sources, from what is written to what is copied.

`resolve_sources` turns the (already expanded) source words into resolved entries of a
SourceTree, before anything is written, so that the cache key can be computed from them:
- A source without wildcards must exist (NotFound otherwise); one with wildcards may match
  nothing, which copies nothing (BuildKit's AllowEmptyWildcard), F67.
- `--exclude` patterns apply below every source, and also to what a wildcard source matches
  (`COPY --exclude=*.txt hom* /d/` copies no .txt file, as Docker's reference shows).
- `--parents`: `a/./b/c` copies `b/c` with its parents from `a`; without `/./` the whole path
  is kept. The part after the pivot selects entries like an ignore pattern (`**` allowed); when
  it has no wildcard it must exist, F74.
`apply_sources` then copies them (copy.py), extracting local archives for ADD (archive.py), and
writes heredoc sources (F76).
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from builder import gomatch
from builder.archive import extract_archive, is_archive
from builder.context import Entry, SourceTree, clamp
from builder.copy import CopyError, CopyOptions, copy_entry, dest_path, merge_tree, mkdir_all, set_times
from builder.ignore import PatternMatcher, matcher_from_patterns
from layerstore.rootpath import resolve_in_root


@dataclass(frozen=True)
class CopySpec:
    """A COPY/ADD after variable expansion: what to copy where, and how to select."""

    command: str  # "COPY" or "ADD", for messages
    sources: tuple[str, ...]
    dest: str
    workdir: str = "/"
    parents: bool = False
    excludes: tuple[str, ...] = ()
    unpack: bool = False  # ADD: extract local archives
    heredocs: tuple[tuple[str, bytes], ...] = ()  # (name, contents) of `COPY <<NAME` sources


@dataclass(frozen=True)
class Source:
    """One resolved source: `name` is the path it was matched as (its last component names the
    copy when it goes inside a directory); `entry` is what it resolves to (links followed)."""

    name: str
    entry: Entry
    include: PatternMatcher | None = None


def _split_wildcard(path: str) -> tuple[str, str]:
    """(`dir/sub`, `*.txt/x`): the part before the first component with a wildcard, and the rest."""
    parts = clamp(path).split("/")
    for i, part in enumerate(parts):
        if gomatch.has_wildcards(part):
            return "/".join(parts[:i]), "/".join(parts[i:])
    return "/".join(parts), ""


def resolve_sources(tree: SourceTree, spec: CopySpec) -> list[Source]:
    """The entries `spec`'s sources name in `tree`, in order (see the module docstring)."""
    exclude = matcher_from_patterns(spec.excludes, what="--exclude")
    out: list[Source] = []
    for src in spec.sources:
        if spec.parents:
            out.extend(_resolve_parents(tree, src))
            continue
        prefix, rest = _split_wildcard(src)
        if not rest:
            out.append(Source(clamp(src), tree.entry(src)))
            continue
        base = tree.resolve(prefix)
        for match in tree.glob(src):
            if exclude is not None:
                below = match[len(base) + 1 :] if base else match
                if exclude.matches(below):
                    continue
            out.append(Source(match, tree.entry(match)))
    return out


def _resolve_parents(tree: SourceTree, src: str) -> list[Source]:
    pivot, sep, pattern = src.partition("/./")
    if not sep:
        pivot, pattern = "/", src
    pattern = clamp(pattern)
    include = PatternMatcher([pattern], file="--parents") if pattern else None
    if not gomatch.has_wildcards(pivot) and not gomatch.has_wildcards(pattern):
        tree.entry(f"{clamp(pivot)}/{pattern}")  # NotFound if the named path does not exist
    return [Source(match, tree.entry(match), include) for match in tree.glob(pivot)]


def apply_sources(
    tree: SourceTree,
    sources: list[Source],
    spec: CopySpec,
    dst_root: Path,
    opts: CopyOptions,
    *,
    scratch_dir: Path | None = None,
) -> None:
    """Copy resolved `sources` (and `spec.heredocs`) into the image root `dst_root`.

    `scratch_dir` (on a filesystem that keeps owners, devices and xattrs) holds temporary
    extractions for ADD archives and heredoc files; it defaults to the system temp directory.
    """
    dest, dest_is_dir = dest_path(spec.dest, spec.workdir)
    exclude = matcher_from_patterns(spec.excludes, what="--exclude")
    _check_destination(sources, spec, dst_root, dest, dest_is_dir)
    for source in sources:
        host = tree.host(source.entry.rel)
        if spec.unpack and stat.S_ISREG(source.entry.st.st_mode) and is_archive(host):
            _unpack(host, source.name, dst_root, dest, opts, scratch_dir, what=f"{spec.command} {source.name}")
            continue
        copy_entry(tree, source.entry, source.name, dst_root, dest, dest_is_dir, replace(opts, include=source.include, exclude=exclude))
    if spec.heredocs:
        with tempfile.TemporaryDirectory(dir=scratch_dir, prefix="heredoc-") as tmp:
            here = SourceTree(Path(tmp), name="heredoc", reset_owner=True)
            for name, data in spec.heredocs:
                path = Path(tmp) / os.path.basename(name)
                path.write_bytes(data)
                path.chmod(0o644)
                copy_entry(here, here.entry(path.name), name, dst_root, dest, dest_is_dir, opts)


def _check_destination(sources: list[Source], spec: CopySpec, dst_root: Path, dest: str, dest_is_dir: bool) -> None:
    """Several sources cannot all become one file: the legacy builder's rule, kept for the case
    where BuildKit would silently overwrite (files onto a destination that is not a directory)."""
    count = len(sources) + len(spec.heredocs)
    if count < 2 or dest_is_dir or spec.parents:
        return
    if all(s.entry.is_dir for s in sources) and not spec.heredocs:
        return  # directories merge their contents, as BuildKit does
    try:
        if stat.S_ISDIR(os.stat(resolve_in_root(dst_root, dest)).st_mode):
            return
    except (FileNotFoundError, NotADirectoryError):
        pass
    raise CopyError(
        f"When using {spec.command} with more than one source file, the destination must be a directory and end with a /"
    )


def _unpack(archive: Path, name: str, dst_root: Path, dest: str, opts: CopyOptions, scratch_dir: Path | None, *, what: str) -> None:
    """Extract `archive` into the directory `dest` (created if needed), merging like `tar -x`."""
    created: list[Path] = []
    target = mkdir_all(dst_root, dest, opts, created)
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix="add-") as tmp:
        extract_archive(archive, Path(tmp), what=what)
        extracted = SourceTree(Path(tmp), name=f"archive {name}")
        merge_tree(extracted, target, CopyOptions(chown=opts.chown, replace_existing=True))
    set_times(created, opts)
