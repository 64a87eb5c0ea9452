"""`docker save` archives: `manifest.json` naming each image's config file, tags and layer files.

Writing: the layout of Docker 25's `docker save` without its OCI half: `blobs/sha256/<hex>` for the
config and each layer (gzip or uncompressed: Docker has no zstd layers), `manifest.json`, and the
legacy `repositories` file. Reading accepts both that and the older layout (`<id>/layer.tar`,
`<id>.json`, symlinked duplicate layers); a layer file may be plain, gzip or zstd. Images read
this way get an OCI manifest made here (the config keeps its bytes, so the image id, which is
the config digest, is Docker's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from layerstore.compression import MEDIA_TYPES
from layerstore.digests import canonical_json, digest_of
from layerstore.oci_layout import blob_name
from layerstore.reference import parse_reference
from layerstore.transfer_archive import ArchiveFiles, ArchiveWriter
from layerstore.transfer_import import Incoming
from layerstore.transfer_media import OCI_CONFIG, OCI_MANIFEST
from pybuild.errors import ParseError, StoreError


@dataclass(frozen=True)
class DockerImage:
    """One image to write: config and layer blob files (bottom first), and its names."""

    config: tuple[str, Path, int]
    layers: tuple[tuple[str, Path, int], ...]
    names: tuple[str, ...]


def write_archive(writer: ArchiveWriter, images: Sequence[DockerImage]) -> None:
    """Write `images` as a docker archive (blobs first, manifest.json last)."""
    entries = []
    repositories: dict[str, dict[str, str]] = {}
    for image in images:
        digest, path, size = image.config
        writer.add_file(blob_name(digest), path, size)
        for ldigest, lpath, lsize in image.layers:
            writer.add_file(blob_name(ldigest), lpath, lsize)
        tags = [parse_reference(n).familiar for n in image.names]
        entries.append({"Config": blob_name(digest), "RepoTags": tags or None,
                        "Layers": [blob_name(d) for d, _, _ in image.layers]})
        for tag in tags:
            repo, _, t = tag.rpartition(":")
            if image.layers:
                repositories.setdefault(repo, {})[t] = image.layers[-1][0].split(":", 1)[1]
    writer.add_bytes("manifest.json", json.dumps(entries, separators=(",", ":")).encode())
    writer.add_bytes("repositories", json.dumps(repositories, separators=(",", ":")).encode())
    writer.finish()


def is_archive(files: ArchiveFiles) -> bool:
    return files.meta("manifest.json") is not None


def read_archive(files: ArchiveFiles) -> list[Incoming]:
    """The images of a docker archive, each with an OCI manifest made for it."""
    data = files.meta("manifest.json")
    if data is None:
        raise StoreError(f"{files.what}: no manifest.json: not a docker archive")
    try:
        entries = json.loads(data)
    except ValueError as e:
        raise StoreError(f"{files.what}: manifest.json is not valid JSON: {e}") from None
    if not isinstance(entries, list) or not entries:
        raise StoreError(f"{files.what}: manifest.json lists no images")
    out: list[Incoming] = []
    for n, entry in enumerate(entries):
        what = f"{files.what}: manifest.json image {n + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or not isinstance(entry.get("Layers"), list):
            raise StoreError(f"{what}: needs Config and Layers")
        config = files.get(entry["Config"])
        if config is None:
            raise StoreError(f"{what}: config file {entry['Config']!r} is missing from the archive")
        layers = []
        for path in entry["Layers"]:
            staged = files.get(str(path)) if isinstance(path, str) else None
            if staged is None:
                raise StoreError(f"{what}: layer file {path!r} is missing from the archive")
            layers.append({"mediaType": MEDIA_TYPES[staged.compression], "digest": staged.digest, "size": staged.size})
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": layers,
        })
        out.append(Incoming(manifest, digest_of(manifest), _names(entry.get("RepoTags"), what), source=files.what))
    return out


def _names(tags: object, what: str) -> tuple[str, ...]:
    if not isinstance(tags, list):
        return ()
    names = []
    for tag in tags:
        try:
            names.append(parse_reference(str(tag)).familiar)
        except ParseError as e:
            raise StoreError(f"{what}: bad RepoTags entry {tag!r}: {e.reason}") from None
    return tuple(names)
