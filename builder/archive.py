"""ADD's local archives: recognised by content, extracted safely, then merged like `tar -x`.

A source is an archive when it is a regular file that, after gzip, bzip2, xz or zstd
decompression (or none), starts with a valid tar header, whatever its name (F77). Extraction is
the layer store's hardened extractor (no absolute names after the leading `/` is dropped, no
`..`, never writing through a symlink, hard links only inside the archive) into an empty
scratch directory; the result is then copied into the destination with COPY's rules, replacing
entries of another type as `tar -x` does. Archive ownership and times are kept (ownership
replaced by --chown), as BuildKit's unpack keeps them.

Names starting with `.wh.` are refused: the layer format would read them as deletions.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, cast

from layerstore.compression import decompressor, sniff
from layerstore.extract import extract
from layerstore.layer_tar import WHITEOUT_PREFIX
from layerstore.tar_format import BLOCK, HARDLINK, TarEntry, TarFormatError, TarReader, decode_header, show_name
from pybuild.errors import PybuildError, StoreError

_SNIFF = 8


class ArchiveError(PybuildError):
    """An archive given to ADD that cannot be extracted safely."""


def is_archive(path: Path) -> bool:
    """True if `path` is a regular file holding a (possibly compressed) tar archive."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(_SNIFF)
            f.seek(0)
            stream = decompressor(f, sniff(head))
            block = _read_block(stream)
    except (OSError, StoreError, EOFError):
        return False
    if len(block) < BLOCK:
        return False
    try:
        return decode_header(block, 0) is not None
    except TarFormatError:
        return False


def _read_block(stream: object) -> bytes:
    read = cast(BinaryIO, stream).read
    parts = []
    want = BLOCK
    while want:
        b = read(want)
        if not b:
            break
        parts.append(b)
        want -= len(b)
    return b"".join(parts)


class _AddEntries:
    """The archive's entries as ADD takes them: a leading `/` dropped (Docker extracts
    `/etc/x` to `<dest>/etc/x`), whiteout names refused."""

    def __init__(self, reader: TarReader, what: str) -> None:
        self._reader = reader
        self._what = what

    def __iter__(self) -> Iterator[TarEntry]:
        for entry in self._reader:
            name = entry.name.lstrip(b"/") or b"."
            if any(p.startswith(WHITEOUT_PREFIX) for p in name.split(b"/")):
                raise ArchiveError(
                    f"{self._what}: entry {show_name(entry.name)}: names starting with .wh. cannot be stored in an image layer"
                )
            linkname = entry.linkname.lstrip(b"/") if entry.type == HARDLINK else entry.linkname
            yield replace(entry, name=name, linkname=linkname)

    def data(self) -> Iterator[bytes]:
        return self._reader.data()


def extract_archive(path: Path, scratch: Path, *, what: str) -> None:
    """Extract the archive at `path` into `scratch`, an empty directory the caller owns."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF)
        f.seek(0)
        reader = TarReader(decompressor(f, sniff(head)))
        try:
            extract(cast(TarReader, _AddEntries(reader, what)), scratch)
        except StoreError as e:
            raise ArchiveError(f"{what}: {e.message}") from e
