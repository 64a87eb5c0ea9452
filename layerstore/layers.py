"""Layers: committing a directory (or an overlay upper dir) as a layer blob, and unpacking layer
blobs into `unpacked/<diff-hex>/` for overlay mounts.

A layer's identity is its diff_id (sha256 of the uncompressed tar). Committing streams the tree once:
tar -> sha256 (diff_id) -> compressor -> sha256 (digest) -> file, so memory does not grow with the
layer. `layers/<diff-hex>.json` records the blobs (one per compression) known for a diff_id.

Unpacking goes through `extract.extract` into a temp dir under `tmp/`; the compressed digest and the
diff_id are both checked before the rename that publishes `unpacked/<diff-hex>/`. An unpacked dir is
therefore always complete and correct; a crash leaves only a temp dir for gc.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerstore.atomic import fsync_dir, private_dir
from layerstore.blobs import Blobs, VerifyingReader
from layerstore.compression import MEDIA_TYPES, Readable, compression_of, decompressor
from layerstore.digests import canonical_json, hex_of, load_json
from layerstore.dir_chain import DIR_FLAGS
from layerstore.layout import Layout
from layerstore.locks import locked_ref
from layerstore.oci import Descriptor
from pybuild.errors import DigestMismatch, StoreError

if TYPE_CHECKING:
    from layerstore.extract import Extracted


@dataclass(frozen=True)
class Layer:
    """One layer as an image references it: identity (diff_id), the blob (digest, size, media
    type) and the uncompressed size (0 when unknown)."""

    diff_id: str
    digest: str
    size: int
    media_type: str
    uncompressed_size: int = 0

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)

    @property
    def compression(self) -> str:
        return compression_of(self.media_type)


class HashingReader:
    """Reads through `source`, hashing and counting what it returns."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        b = self._source.read(n)
        self.hash.update(b)
        self.size += len(b)
        return b

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def remove_tree(path: Path, tmp: Path) -> None:
    """Remove a directory tree: first renamed into `tmp` (so it disappears from its place
    atomically), then deleted. Works at any depth (no recursion, one descriptor at a time, even
    below PATH_MAX's reach) and makes read-only directories writable on the way."""
    if not os.path.lexists(path):
        return
    doomed = tmp / f"rm-{os.urandom(16).hex()}"
    try:
        os.rename(path, doomed)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        doomed = path
    if os.path.islink(doomed) or not os.path.isdir(doomed):
        os.unlink(doomed)
        return
    fd = os.open(doomed, DIR_FLAGS)
    stack: list[tuple[str, list[str]]] = [("", os.listdir(fd))]
    try:
        while stack:
            name, pending = stack[-1]
            if not pending:
                stack.pop()
                if not stack:
                    break
                parent = os.open("..", DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = parent
                os.rmdir(name, dir_fd=fd)
                continue
            child = pending.pop()
            if stat.S_ISDIR(os.stat(child, dir_fd=fd, follow_symlinks=False).st_mode):
                sub = os.open(child, DIR_FLAGS, dir_fd=fd)
                os.fchmod(sub, 0o700)  # entries of a read-only dir could not be removed
                os.close(fd)
                fd = sub
                stack.append((child, os.listdir(fd)))
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(doomed)




class Layers:
    """Layer commit, records and unpacking for one store."""

    def __init__(self, layout: Layout, blobs: Blobs) -> None:
        self.layout = layout
        self.blobs = blobs

    # ------------------------------------------------------------------------------ commit

    def commit_dir(
        self,
        path: Path,
        *,
        compression: str = "zstd",
        source_date_epoch: int | None = None,
        consume: bool = False,
    ) -> Layer:
        """Commit the tree at `path` (a plain directory or an overlay upper dir) as a layer blob.

        Idempotent by content: the same tree gives the same diff_id, and a layer already stored is
        not stored twice. With `consume`, `path` is ours to take: it becomes `unpacked/<diff-hex>/`
        (renamed, so it must be on the store's file system), or is removed if that layer is already
        unpacked; either way `path` is gone afterwards. Raises WhiteoutNameError for a real `.wh.*`
        file, leaving `path` untouched.
        """
        from layerstore.layer_sink import LayerSink
        from layerstore.layer_tar import write_tree

        with self.blobs.writer() as out, LayerSink(out, compression) as sink:
            write_tree(path, sink, source_date_epoch=source_date_epoch)
            sink.finish()
        layer = Layer(sink.diff_id, out.result.digest, out.result.size, MEDIA_TYPES[compression], sink.size)
        self.record(layer)
        if consume:
            self._adopt(path, layer.diff_id)
        return layer

    def commit_upper(self, upper: Path, *, compression: str = "zstd", source_date_epoch: int | None = None) -> Layer:
        """`commit_dir(upper, consume=True)`: the runner's and builder's way to commit a step."""
        return self.commit_dir(upper, compression=compression, source_date_epoch=source_date_epoch, consume=True)

    def _adopt(self, path: Path, diff_id: str) -> None:
        # The layer has no entry for its root; give it the mode an unpack gives it (a staging dir
        # from mkdtemp is 0700, which would make the container's / private).
        os.chmod(path, 0o755)
        if not self.publish_unpacked(path, diff_id):
            remove_tree(path, self.layout.tmp)  # unpacked already, or another file system

    def publish_unpacked(self, tree: Path, diff_id: str) -> bool:
        """Move `tree` (complete, and checked against `diff_id`) into place as
        `unpacked/<diff-hex>/`, unless that layer is unpacked already; True if this tree was
        published. Safe to race: the first rename wins, and a tree that is not published (or on
        another file system) stays where it is for its owner to remove."""
        dest = self.layout.unpacked_layer(diff_id)
        if dest.exists():
            return False
        try:
            os.rename(tree, dest)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EXDEV):
                raise
            return False
        fsync_dir(dest.parent)
        return True

    # ------------------------------------------------------------------------------ records

    def record(self, layer: Layer) -> None:
        """Add `layer`'s blob to `layers/<diff-hex>.json` (a cache of diff_id -> blobs; losing an
        entry costs a recompression, never correctness). Serialized by the record's lock."""
        path = self.layout.layer_record(layer.diff_id)
        with locked_ref(path) as held:
            doc: dict[str, Any] = _parse_record(held.current, path) if held.current else {"diff_id": layer.diff_id, "blobs": []}
            if any(b["digest"] == layer.digest for b in doc["blobs"]):
                return
            doc["blobs"].append({"digest": layer.digest, "mediaType": layer.media_type, "size": layer.size})
            doc["blobs"].sort(key=lambda b: b["mediaType"])
            if layer.uncompressed_size:
                doc["size"] = layer.uncompressed_size
            held.commit(canonical_json(doc).decode())

    def known(self, diff_id: str, compression: str | None = None) -> Layer | None:
        """A stored blob of layer `diff_id` (of `compression`, if given), or None."""
        path = self.layout.layer_record(diff_id)
        try:
            doc = _parse_record(path.read_text(), path)
        except FileNotFoundError:
            return None
        for b in doc["blobs"]:
            layer = Layer(diff_id, b["digest"], b["size"], b["mediaType"], doc.get("size", 0))
            if (compression is None or layer.compression == compression) and self.blobs.has(layer.digest):
                return layer
        return None

    def uncompressed_size(self, layer: Layer) -> int:
        """The size of the layer's tar, as `layer` or its record says; the blob's size where
        neither knows (a record lost, or written before sizes were recorded)."""
        if layer.uncompressed_size:
            return layer.uncompressed_size
        known = self.known(layer.diff_id)
        return known.uncompressed_size if known and known.uncompressed_size else layer.size

    def recompress(self, layer: Layer, compression: str) -> Layer:
        """The same layer as a blob with `compression` (made from `layer`'s blob, verified, if not
        stored yet)."""
        if layer.compression == compression:
            return layer
        found = self.known(layer.diff_id, compression)
        if found is not None:
            return found
        from layerstore.layer_sink import LayerSink

        with self.open_tar(layer) as tar, self.blobs.writer() as out, LayerSink(out, compression) as sink:
            while chunk := tar.read(1 << 20):
                sink(chunk)
            sink.finish()
        new = Layer(layer.diff_id, out.result.digest, out.result.size, MEDIA_TYPES[compression], sink.size)
        self.record(new)
        return new

    # ------------------------------------------------------------------------------ reading

    @contextmanager
    def open_tar(self, layer: Layer) -> Iterator[HashingReader]:
        """A reader of the layer's uncompressed tar. When the block ends normally, the rest of the
        stream is read and both the blob digest and the diff_id are checked (DigestMismatch)."""
        with self.blobs.open(layer.digest, size=layer.size) as raw:
            tar = HashingReader(decompressor(raw, layer.compression))
            try:
                yield tar
                tar.drain()
                raw.drain()
            except StoreError as e:
                if isinstance(e, DigestMismatch):
                    raise
                _raise_if_damaged(raw, layer)
                raise
            if tar.digest != layer.diff_id:
                raise DigestMismatch(f"layer {layer.digest}", expected=layer.diff_id, got=tar.digest)

    def unpacked_path(self, diff_id: str) -> Path:
        return self.layout.unpacked_layer(diff_id)

    def unpack(self, layer: Layer) -> Path:
        """`unpacked/<diff-hex>/` for `layer`, extracting the blob first if needed. Idempotent and
        safe to race: concurrent unpackers each extract privately, and the first rename wins."""
        dest = self.layout.unpacked_layer(layer.diff_id)
        if dest.is_dir():
            return dest
        from layerstore.extract import UnsafeLayer

        work = private_dir(self.layout.tmp, "unpack-")
        os.chmod(work, 0o755)  # the layer root, unless the tar has a "./" entry
        try:
            try:
                with self.open_tar(layer) as tar:
                    extract_into(tar, work)
            except UnsafeLayer as e:
                raise UnsafeLayer(f"layer {layer.digest}: {e.message}") from None
            self.publish_unpacked(work, layer.diff_id)
        finally:
            if work.exists():
                remove_tree(work, self.layout.tmp)
        return dest


def extract_into(stream: Readable, target: Path) -> Extracted:
    """Extract the tar read from `stream` into the empty directory `target` (see `extract`). The
    tar is read ahead in large pieces: the stream may have been read past the end-of-archive
    blocks, so callers read it to its end afterwards (as both digests need anyway)."""
    from layerstore.extract import extract
    from layerstore.tar_format import TarReader

    return extract(TarReader(stream, read_ahead=True), target)


def check_layer(stream: Readable) -> int:
    """Check the tar read from `stream` against the extractor's rules without writing anything
    (`layer_check`); the number of entries. As with `extract_into`, read the stream to its end
    afterwards."""
    from layerstore.layer_check import LayerCheck
    from layerstore.tar_format import TarReader

    check = LayerCheck()
    entries = 0
    for entry in TarReader(stream, read_ahead=True):
        check.admit(entry)
        entries += 1
    return entries


def _raise_if_damaged(raw: VerifyingReader, layer: Layer) -> None:
    """After a decoding error, say whether the blob itself is damaged (the more useful message)."""
    try:
        raw.drain()
    except DigestMismatch:
        raise
    except (StoreError, OSError):
        return


def _parse_record(text: str, path: Path) -> dict[str, Any]:
    doc = load_json(text.encode(), str(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("blobs"), list):
        raise StoreError(f"{path}: malformed layer record")
    hex_of(doc.get("diff_id", ""))
    return doc
