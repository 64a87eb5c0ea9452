"""One COPY or ADD instruction's sources, from what is written to what is copied.

`resolve_sources` turns the (already expanded) source words into resolved entries, before
anything is written, so that the cache key can be computed from them (`digest_sources`):
- A source without wildcards must exist (NotFound otherwise); one with wildcards may match
  nothing, which copies nothing (BuildKit's AllowEmptyWildcard), F67.
- `--exclude` patterns apply below every source, and also to what a wildcard source matches
  (`COPY --exclude=*.txt hom* /d/` copies no .txt file, as Docker's reference shows).
- `--parents`: `a/./b/c` copies `b/c` with its parents from `a`; without `/./` the whole path
  is kept. The part after the pivot selects entries like an ignore pattern (`**` allowed); when
  it has no wildcard it must exist, F74.
- ADD of an http(s) URL downloads it (remote.py) into the caller's download directory; COPY
  refuses URLs. Git sources are refused with a clear error (not supported).
`apply_sources` then copies them in order (copy.py), extracting archives for ADD (archive.py:
local ones by default, remote ones only with `--unpack=true`), and writes heredocs (F76).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from builder import gomatch
from builder.archive import extract_archive, is_archive
from builder.contenthash import Hasher
from builder.context import Entry, SourceTree, clamp
from builder.copy import CopyError, CopyOptions, copy_entry, dest_path, merge_tree, mkdir_all, set_times
from builder.ignore import PatternMatcher, matcher_from_patterns
from builder.remote import fetch, is_git_url, is_url
from layerstore.rootpath import resolve_in_root
from pybuild.errors import PybuildError


class SourceSpecError(PybuildError):
    """A COPY/ADD whose flags and sources do not go together."""


@dataclass(frozen=True)
class CopySpec:
    """A COPY/ADD after variable expansion: what to copy where, and how to select."""

    command: str  # "COPY" or "ADD"
    sources: tuple[str, ...]
    dest: str
    workdir: str = "/"
    parents: bool = False
    excludes: tuple[str, ...] = ()
    unpack: bool | None = None  # ADD --unpack; None: local archives yes, remote ones no
    checksum: str | None = None  # ADD --checksum, for one URL source
    heredocs: tuple[tuple[str, bytes], ...] = ()  # (name, contents) of `COPY <<NAME` sources

    @property
    def is_add(self) -> bool:
        return self.command.upper() == "ADD"


@dataclass(frozen=True)
class Source:
    """One resolved source: `name` is the path it was matched as (its last component names the
    copy when it goes inside a directory); `entry` is what it resolves to (links followed) in
    `tree`; `remote` marks a download."""

    name: str
    entry: Entry
    tree: SourceTree
    include: PatternMatcher | None = None
    remote: bool = False


def check_spec(spec: CopySpec) -> None:
    """The flag and source combinations BuildKit refuses, with its messages."""
    if spec.checksum is not None:
        if not spec.is_add:
            raise SourceSpecError("checksum can't be specified for COPY")
        if len(spec.sources) != 1:
            raise SourceSpecError("checksum can't be specified for multiple sources")
        if not (is_url(spec.sources[0]) or is_git_url(spec.sources[0])):
            raise SourceSpecError("checksum requires HTTP(S) or Git sources")
    for src in spec.sources:
        if is_git_url(src):
            if not spec.is_add:
                raise SourceSpecError("source can't be a git ref for COPY")
            raise SourceSpecError(f"ADD {src}: git sources are not supported by pybuild; clone in a RUN step instead")
        if is_url(src) and not spec.is_add:
            raise SourceSpecError("source can't be a URL for COPY")


def _split_wildcard(path: str) -> tuple[str, str]:
    """(`dir/sub`, `*.txt/x`): the part before the first component with a wildcard, and the rest."""
    parts = clamp(path).split("/")
    for i, part in enumerate(parts):
        if gomatch.has_wildcards(part):
            return "/".join(parts[:i]), "/".join(parts[i:])
    return "/".join(parts), ""


def resolve_sources(tree: SourceTree, spec: CopySpec, *, download_dir: Path | None = None) -> list[Source]:
    """The entries `spec`'s sources name, in order (see the module docstring). URL sources are
    downloaded into new subdirectories of `download_dir` (created only when there is a URL),
    which must outlive `apply_sources`."""
    check_spec(spec)
    exclude = matcher_from_patterns(spec.excludes, what="--exclude")
    out: list[Source] = []
    for index, src in enumerate(spec.sources):
        if is_url(src):
            out.append(_download(src, spec, download_dir, index))
        elif spec.parents:
            out.extend(_resolve_parents(tree, src))
        else:
            out.extend(_resolve_local(tree, src, exclude))
    return out


def _resolve_local(tree: SourceTree, src: str, exclude: PatternMatcher | None) -> list[Source]:
    prefix, rest = _split_wildcard(src)
    if not rest:
        return [Source(clamp(src), tree.entry(src), tree)]
    base = tree.resolve(prefix)
    out = []
    for match in tree.glob(src):
        below = match[len(base) + 1 :] if base else match
        if exclude is None or not exclude.matches(below):
            out.append(Source(match, tree.entry(match), tree))
    return out


def _resolve_parents(tree: SourceTree, src: str) -> list[Source]:
    pivot, sep, pattern = src.partition("/./")
    if not sep:
        pivot, pattern = "/", src
    pattern = clamp(pattern)
    include = PatternMatcher([pattern], file="--parents") if pattern else None
    if not gomatch.has_wildcards(pivot) and not gomatch.has_wildcards(pattern):
        tree.entry(f"{clamp(pivot)}/{pattern}")  # NotFound if the named path does not exist
    return [Source(match, tree.entry(match), tree, include) for match in tree.glob(pivot)]


def _download(url: str, spec: CopySpec, download_dir: Path | None, index: int) -> Source:
    if download_dir is None:
        raise SourceSpecError(f"ADD {url}: no directory to download into")
    download_dir.mkdir(parents=True, exist_ok=True)
    where = Path(tempfile.mkdtemp(prefix=f"url-{index}-", dir=download_dir))  # one per download
    got = fetch(url, where, checksum=spec.checksum)
    remote_tree = SourceTree(where, name=url, reset_owner=True)
    return Source(got.name, remote_tree.entry(got.name), remote_tree, remote=True)


def digest_sources(sources: list[Source], spec: CopySpec, hasher_for: Callable[[SourceTree], Hasher]) -> list[tuple[str, str]]:
    """(name, content digest) of each source, in order, heredocs last: what a COPY/ADD key holds."""
    exclude = matcher_from_patterns(spec.excludes, what="--exclude")
    out = []
    for s in sources:
        digest = hasher_for(s.tree).digest(s.entry, include=s.include, exclude=exclude)
        out.append((("url:" if s.remote else "") + s.name, digest))
    for name, data in spec.heredocs:
        out.append((f"heredoc:{name}", "sha256:" + hashlib.sha256(data).hexdigest()))
    return out


def apply_sources(
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
        host = source.tree.host(source.entry.rel)
        unpack = spec.is_add and (spec.unpack if spec.unpack is not None else not source.remote)
        if unpack and stat.S_ISREG(source.entry.st.st_mode) and is_archive(host):
            _unpack(host, source.name, dst_root, dest, opts, scratch_dir, what=f"{spec.command} {source.name}")
            continue
        per_source = replace(opts, include=source.include, exclude=exclude)
        copy_entry(source.tree, source.entry, source.name, dst_root, dest, dest_is_dir, per_source)
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
