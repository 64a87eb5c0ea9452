"""A layer tar checked against the extractor's rules without writing a file.

A pull stores a layer's blob and defers unpacking it to its first use (`Layers.unpack`), as
`skopeo copy` and `ctr content fetch` do: a pull followed by a push or a save never writes the
files at all. But a hostile layer must still be refused by the pull, before any tag is set, not
at the first `run`. So the pull passes the tar through `LayerCheck`, which follows the same rules
as `extract.extract` over an in-memory tree of what the layer has made so far: a name that leaves
the layer (`extract.entry_parts`), a path through a symlink or file of this layer, a hardlink to
something the layer lacks or to a directory, a directory replaced by a file or the reverse.

The extractor stays the safety boundary (it refuses through the kernel, with O_NOFOLLOW, whatever
this check missed); this is the early refusal. Memory grows with the number of entries (a path and
a flag each, ~100 bytes), not with the layer's bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from layerstore.extract import (
    entry_parts,
    hardlink_target_missing,
    hardlink_to_directory,
    not_a_directory,
    not_in_layer,
    replaces,
    split_name,
)
from layerstore.layer_tar import OPAQUE_MARKER, WHITEOUT_PREFIX
from layerstore.tar_format import DIRECTORY, HARDLINK, TarEntry


class LayerCheck:
    """The paths a layer has made so far, each a directory or not; `admit` each entry in order."""

    def __init__(self) -> None:
        self._is_dir: dict[bytes, bool] = {}

    def admit(self, entry: TarEntry) -> None:
        """Raise UnsafeLayer where extracting `entry` (after the entries admitted before it) would."""
        parts = entry_parts(entry)
        if not parts:  # aufs bookkeeping, or the root: a directory (entry_parts)
            return
        *parent, base = parts
        where = self._walk(parent, entry.name, create=True)
        if base.startswith(WHITEOUT_PREFIX):
            if base != OPAQUE_MARKER:  # `.wh.NAME` becomes a (non-directory) whiteout NAME
                hidden = where + base[len(WHITEOUT_PREFIX):]
                self._make_room(hidden, False, entry.name)
                self._is_dir[hidden] = False
            return
        path = where + base
        is_dir = entry.type == DIRECTORY
        self._make_room(path, is_dir, entry.name)
        if entry.type == HARDLINK:
            *tparent, tbase = split_name(entry.linkname)
            target = self._walk(tparent, entry.name, create=False) + tbase
            if target not in self._is_dir:
                raise hardlink_target_missing(entry)
            if self._is_dir[target]:
                raise hardlink_to_directory(entry)
        self._is_dir[path] = is_dir

    def _walk(self, parent: Iterable[bytes], what: bytes, *, create: bool) -> bytes:
        """`parent`'s path with a trailing slash (b"" for the root), every component a directory
        of this layer; absent ones are made (as the extractor makes them) when `create`."""
        path = b""
        for name in parent:
            path += name
            is_dir = self._is_dir.get(path)
            if is_dir is None:
                if not create:
                    raise not_in_layer(what, name)
                self._is_dir[path] = True
            elif not is_dir:
                raise not_a_directory(what, name)
            path += b"/"
        return path

    def _make_room(self, path: bytes, is_dir: bool, what: bytes) -> None:
        """As `extract._make_room`: a non-directory may replace a non-directory (tar semantics), a
        directory may be given again, nothing else may change kind."""
        existing = self._is_dir.get(path)
        if existing is None:
            return
        if existing or is_dir:
            if existing and is_dir:
                return
            raise replaces(what, existing)
        del self._is_dir[path]
