"""Saving images from the store to archives and loading archives into it (`pybuild save/load`).

`save` writes an OCI layout (tar or directory) or a docker archive holding several images that
share blobs. Blobs are taken from the store as they are (copied by the kernel, or hardlinked into
a directory): a layer is recompressed only when `compression` asks for another one than it has,
and then the recompressed blob is kept in the store for next time. `since` makes an incremental
bundle: the layers the base image has are left out.

`load` reads any of those (a file, a directory or a stream; a gzip or zstd compressed tar too),
verifies every blob and layer (transfer_import) and only then publishes and tags.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from layerstore import docker_archive, oci_layout
from layerstore.atomic import atomic_writer
from layerstore.compression import sniff
from layerstore.digests import canonical_json, digest_of
from layerstore.images import Image
from layerstore.layers import Layer
from layerstore.oci import MANIFEST, Manifest
from layerstore.reference import parse_reference
from layerstore.store import Store
from layerstore.transfer_archive import ArchiveFiles, DirWriter, TarWriter, read_dir, read_tar
from layerstore.transfer_import import Staging, commit_incoming
from layerstore.transfer_media import Platform, docker_layer_type
from layerstore.transfer_verify import EXPANSION_FLOOR, BoundedDecompressor, Readable, expansion_limit
from pybuild.errors import NotFound, ParseError, StoreError

FORMATS = ("oci", "oci-dir", "docker")
STDIO = "-"


@dataclass(frozen=True)
class Prepared:
    """An image as it will be written: manifest bytes (the stored ones when nothing changes), and
    its layers with the compression asked for."""

    image: Image
    names: tuple[str, ...]
    manifest: bytes
    manifest_digest: str
    media_type: str
    layers: tuple[Layer, ...]


def resolve_for_save(store: Store, name: str) -> tuple[Image, tuple[str, ...]]:
    """The image `name` means, and the name to write with it (none when given by id or digest)."""
    image = store.resolve(name)
    try:
        ref = parse_reference(name)
    except ParseError:
        return image, ()
    if ref.digest is None and store.tags.get(ref) == image.digest:
        return image, (ref.familiar,)
    return image, ()


def prepare(store: Store, image: Image, names: tuple[str, ...], compression: str | None) -> Prepared:
    """`image` with every layer in `compression` (None: as stored)."""
    layers = tuple(
        layer if compression is None or layer.compression == compression else store.layers.recompress(layer, compression)
        for layer in image.layers
    )
    if all(a.digest == b.digest for a, b in zip(layers, image.layers, strict=True)):
        return Prepared(image, names, image.manifest_bytes, image.digest, image.manifest.media_type, layers)
    manifest = Manifest(image.manifest.config, tuple(layer.descriptor for layer in layers), MANIFEST,
                        image.manifest.annotations)
    data = canonical_json(manifest.to_json())
    return Prepared(image, names, data, digest_of(data), MANIFEST, layers)


def save(
    store: Store,
    names: Sequence[str],
    output: str,
    *,
    fmt: str = "oci",
    compression: str | None = None,
    since: str | None = None,
    stdout: BinaryIO | None = None,
    link: bool = True,
) -> list[Prepared]:
    """Write the images `names` to `output` (a file, a directory for `oci-dir`, or `-` for
    `stdout`). A file is written whole and renamed into place. Returns what was written."""
    if fmt not in FORMATS:
        raise StoreError(f"unknown format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if fmt == "docker":
        compression = compression or "gzip"
        docker_layer_type(compression)  # refuses zstd
        if since:
            raise StoreError("--since makes OCI bundles only", hint="use --format oci")
    resolved = [resolve_for_save(store, n) for n in names]
    merged: dict[str, tuple[Image, tuple[str, ...]]] = {}
    for image, image_names in resolved:
        prev = merged.get(image.digest)
        merged[image.digest] = (image, (prev[1] if prev else ()) + image_names)
    prepared = [prepare(store, image, image_names, compression) for image, image_names in merged.values()]
    base_digests: set[str] = set()
    base_name = None
    if since:
        base = store.resolve(since)
        base_name = base.digest
        base_digests = {layer.digest for layer in prepare(store, base, (), compression).layers}
    if fmt == "oci-dir":
        if output == STDIO:
            raise StoreError("--format oci-dir writes a directory, not standard output", hint="use -o DIR")
        target = Path(output)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise StoreError(f"{target}: exists and is not an empty directory")
        try:
            _write(store, DirWriter(target, link=link), prepared, fmt, base_digests, base_name)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # it was empty or absent: leave no half layout
            raise
        return prepared
    with _output_file(output, stdout) as out:
        _write(store, TarWriter(out), prepared, fmt, base_digests, base_name)
    return prepared


def _write(store: Store, writer: DirWriter | TarWriter, prepared: list[Prepared], fmt: str,
           base_digests: set[str], base_name: str | None) -> None:
    def blob(digest: str) -> tuple[str, Path, int]:
        return digest, store.blobs.path(digest), store.blobs.size(digest)

    if fmt == "docker":
        docker_archive.write_archive(writer, [
            docker_archive.DockerImage(blob(p.image.id), tuple(blob(layer.digest) for layer in p.layers), p.names)
            for p in prepared
        ])
        return
    oci_layout.write_layout(writer, [
        oci_layout.SaveImage(
            p.manifest, p.manifest_digest, p.media_type, p.names,
            (blob(p.image.id),) + tuple(blob(layer.digest) for layer in p.layers if layer.digest not in base_digests),
        )
        for p in prepared
    ], bundle_base=base_name)


@contextmanager
def _output_file(output: str, stdout: BinaryIO | None) -> Iterator[BinaryIO]:
    if output == STDIO:
        if stdout is None:
            raise StoreError("no standard output to write to")
        yield stdout
        stdout.flush()
        return
    target = Path(output)
    if target.is_dir():
        raise StoreError(f"{target}: is a directory", hint="give a file name, or --format oci-dir")
    if not target.parent.is_dir():
        raise NotFound(f"{target.parent}: no such directory")
    with atomic_writer(target) as f:
        yield f


@dataclass(frozen=True)
class Loaded:
    image: Image
    names: tuple[str, ...]


def load(
    store: Store,
    source: str,
    *,
    stdin: BinaryIO | None = None,
    platform: Platform | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Loaded]:
    """Load every image of the archive `source` (a file, a directory, or `-` for `stdin`):
    verified, then published, then tagged. Nothing is published or tagged if anything is wrong."""
    with Staging(store) as staging:
        if source == STDIO:
            if stdin is None:
                raise StoreError("no standard input to read from")
            files = read_tar(_maybe_decompressed(stdin, 0, "standard input"), staging, "standard input")
        else:
            path = Path(source)
            if path.is_dir():
                files = read_dir(path, staging, str(path))
            else:
                try:
                    f = open(path, "rb")
                except FileNotFoundError:
                    raise NotFound(f"{path}: no such file or directory") from None
                with f:
                    files = read_tar(_maybe_decompressed(f, os.fstat(f.fileno()).st_size, str(path)), staging, str(path))
        incoming = _images_of(files, staging, platform)
        images = commit_incoming(store, staging, incoming, instruction=f"load {files.what}")
    loaded = [Loaded(image, inc.names) for image, inc in zip(images, incoming, strict=True)]
    if progress:
        for item in loaded:
            progress(f"loaded {item.image.digest}")
    return loaded


def _images_of(files: ArchiveFiles, staging: Staging, platform: Platform | None) -> list:  # type: ignore[type-arg]
    if oci_layout.is_layout(files):
        return oci_layout.read_layout(files, staging, platform=platform)
    if docker_archive.is_archive(files):
        return docker_archive.read_archive(files)
    raise StoreError(f"{files.what}: neither an OCI image layout (index.json) nor a docker archive (manifest.json)")


class _Prefixed:
    """A stream with its first bytes put back."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head, self._rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out = self._head if n is None or n < 0 else self._head[:n]
            self._head = self._head[len(out):]
            return out
        return self._rest.read(n)


def _maybe_decompressed(f: BinaryIO, size: int, what: str) -> Readable:
    """`f`, or its decompressed bytes when it starts like gzip or zstd (`docker save | gzip`)."""
    head = f.read(8)
    stream = _Prefixed(head, f)
    kind = sniff(head)
    if kind not in ("gzip", "zstd"):
        return stream
    limit = expansion_limit(size) if size else 64 * EXPANSION_FLOOR
    return BoundedDecompressor(stream, kind, limit=limit, what=what)
