"""OCI image layouts (image-layout.md), as a directory or a tar: several images in one, sharing blobs.

Writing: `oci-layout`, `blobs/<alg>/<hex>` once per blob, then `index.json` with one descriptor per
name; each carries `org.opencontainers.image.ref.name` (the familiar name, `app:1`, which is what
`skopeo ... oci-archive:FILE:app:1` matches and what the store's own index.json holds) and
`io.containerd.image.name` (the full name, which containerd and Docker read). An incremental bundle
(`save --since`) is the same layout without the blobs of the layers the base image has, marked
with the annotation BUNDLE_BASE on the index.

Reading: index.json's manifests (a nested index or manifest list resolves to the platform asked
for), their names from those annotations; the blobs are checked by transfer_import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerstore.digests import canonical_json, check_bytes, json_object
from layerstore.layout import OCI_LAYOUT
from layerstore.oci import REF_NAME
from layerstore.reference import parse_reference
from layerstore.transfer_archive import ArchiveFiles, ArchiveWriter
from layerstore.transfer_import import Incoming, Staging
from layerstore.transfer_media import (
    IMAGE_MANIFESTS,
    INDEXES,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Platform,
    host_platform,
    manifest_media_type,
    select_manifest,
)
from pybuild.errors import ParseError, StoreError

CONTAINERD_NAME = "io.containerd.image.name"
BUNDLE_BASE = "io.pybuild.bundle.base"


@dataclass(frozen=True)
class SaveImage:
    """One image to write: its manifest's bytes, the names to give it, and the blob files
    (`digest`, `path`, `size`) to include: its config and the layers not left out."""

    manifest: bytes
    manifest_digest: str
    media_type: str
    names: tuple[str, ...]
    blobs: tuple[tuple[str, Path, int], ...]


def blob_name(digest: str) -> str:
    alg, _, hexpart = digest.partition(":")
    return f"blobs/{alg}/{hexpart}"


def write_layout(writer: ArchiveWriter, images: Sequence[SaveImage], *, bundle_base: str | None = None) -> None:
    """Write `images` as an OCI layout through `writer` (blobs first, index.json last)."""
    writer.add_bytes("oci-layout", OCI_LAYOUT)
    descriptors: list[dict[str, Any]] = []
    for image in images:
        for digest, path, size in image.blobs:
            writer.add_file(blob_name(digest), path, size)
        writer.add_bytes(blob_name(image.manifest_digest), image.manifest)
        base = {"mediaType": image.media_type, "digest": image.manifest_digest, "size": len(image.manifest)}
        if not image.names:
            descriptors.append(base)
        for name in image.names:
            ref = parse_reference(name)
            descriptors.append(base | {"annotations": {REF_NAME: ref.familiar, CONTAINERD_NAME: str(ref)}})
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    if bundle_base:
        index["annotations"] = {BUNDLE_BASE: bundle_base}
    writer.add_bytes("index.json", canonical_json(index))
    writer.finish()


def names_of(desc: dict[str, Any]) -> tuple[str, ...]:
    """The familiar name a descriptor's annotations give its image, if any. A bare ref.name with no
    repository (`latest`, `1`, as `skopeo copy ... oci:DIR:1` writes) names no image."""
    ann = desc.get("annotations") or {}
    if not isinstance(ann, dict):
        return ()
    for key in (CONTAINERD_NAME, REF_NAME):
        value = ann.get(key)
        if not isinstance(value, str) or not value:
            continue
        if key == REF_NAME and not any(c in value for c in ":/@"):
            continue
        try:
            ref = parse_reference(value)
        except ParseError:
            continue
        if ref.tag:
            return (ref.familiar,)
    return ()


def is_layout(files: ArchiveFiles) -> bool:
    return files.meta("index.json") is not None


def read_layout(files: ArchiveFiles, staging: Staging, *, platform: Platform | None = None) -> list[Incoming]:
    """The images an OCI layout holds, with their names (images named twice appear once)."""
    index_bytes = files.meta("index.json")
    if index_bytes is None:
        raise StoreError(f"{files.what}: no index.json: not an OCI image layout")
    layout = files.meta("oci-layout")
    if layout is not None:
        version = json_object(layout, f"{files.what}: oci-layout").get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise StoreError(f"{files.what}: unsupported OCI layout version {version!r}")
    index = json_object(index_bytes, f"{files.what}: index.json")
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise StoreError(f"{files.what}: index.json has no manifests list")
    found: dict[str, Incoming] = {}
    for desc in manifests:
        if not isinstance(desc, dict):
            raise StoreError(f"{files.what}: index.json: a manifest descriptor is not an object")
        names = names_of(desc)
        digest, data = _manifest_for(files, staging, desc, platform or host_platform())
        prev = found.get(digest)
        found[digest] = Incoming(data, digest, (prev.names if prev else ()) + names, source=files.what)
    if not found:
        raise StoreError(f"{files.what}: index.json lists no images")
    return list(found.values())


def _manifest_for(files: ArchiveFiles, staging: Staging, desc: dict[str, Any], platform: Platform) -> tuple[str, bytes]:
    for _ in range(4):  # an index may point at an index; no deeper than this
        digest, size = desc.get("digest"), desc.get("size")
        if not isinstance(digest, str) or not isinstance(size, int):
            raise StoreError(f"{files.what}: a descriptor lacks digest or size")
        staged = files.get(blob_name(digest)) if ":" in digest else None
        if staged is None:
            raise StoreError(f"{files.what}: manifest {digest} is missing from the archive")
        data = check_bytes(staging.read(digest, f"manifest {digest}", MAX_MANIFEST_BYTES), digest=digest, size=size,
                           what=f"{files.what}: manifest {digest}")
        kind = manifest_media_type(data, desc.get("mediaType"))
        if kind in IMAGE_MANIFESTS:
            return digest, data
        if kind in INDEXES:
            desc = select_manifest(json_object(data, f"{files.what}: index {digest}"), platform, what=f"{files.what}: index {digest}")
            continue
    raise StoreError(f"{files.what}: indexes nested too deeply")
