"""Media types and platforms of images on the move: what a manifest is, and which manifest of an
index (OCI) or manifest list (Docker) is the one for a platform.

Pure functions only; the registry client, the OCI layout reader and the docker archive reader all
decide with these. Platform matching follows containerd's `platforms` package: os and architecture
must match; a variant given by the user must match (arm64's default variant is v8, arm's is v7);
without one, the machine's default variant is preferred and any other accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from layerstore import compression, oci
from layerstore.digests import json_object
from layerstore.images import host_architecture
from pybuild.errors import NotFound, ParseError, StoreError

# The store's own names for these (layerstore.oci, layerstore.compression), plus the ones only
# images on the move meet: indexes, manifest lists, non-distributable layers, schema 1.
OCI_MANIFEST = oci.MANIFEST
OCI_INDEX = oci.INDEX
OCI_CONFIG = oci.CONFIG
OCI_LAYER = compression.LAYER_TAR
OCI_LAYER_GZIP = compression.LAYER_GZIP
OCI_LAYER_ZSTD = compression.LAYER_ZSTD
DOCKER_MANIFEST = oci.DOCKER_MANIFEST
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = oci.DOCKER_CONFIG
DOCKER_LAYER = compression.DOCKER_LAYER_GZIP
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
# distribution 2.8 answers 404 to a manifest GET whose Accept lacks the OCI types, so every GET
# sends all four (peer-tools.md).
MANIFEST_ACCEPT = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)

# A manifest or index larger than this is refused before it is parsed (distribution's own limit).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024



def docker_layer_type(kind: str) -> str:
    """The Docker schema 2 layer media type; Docker has none for zstd."""
    if kind == "zstd":
        raise StoreError("docker images cannot carry zstd layers", hint="use --compression gzip")
    return DOCKER_LAYER if kind == "gzip" else DOCKER_LAYER_TAR


def manifest_media_type(data: bytes, declared: str | None = None) -> str:
    """The media type of a manifest document: its `mediaType` field, else the one a transport
    declared (Content-Type, descriptor), else guessed from its shape. Schema 1 is refused."""
    doc = json_object(data, "manifest")
    inner = doc.get("mediaType")
    kind = inner if isinstance(inner, str) and inner else None
    if kind is None and declared and declared.split(";")[0].strip() in IMAGE_MANIFESTS | INDEXES:
        kind = declared.split(";")[0].strip()
    if kind is None:
        if doc.get("schemaVersion") == 1:
            kind = DOCKER_SCHEMA1
        elif "manifests" in doc:
            kind = OCI_INDEX
        elif "layers" in doc and "config" in doc:
            kind = OCI_MANIFEST
        else:
            raise StoreError("document is neither an image manifest nor an index")
    if kind in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise StoreError("Docker schema 1 manifests are not supported", hint="re-push the image with a current tool")
    if kind not in IMAGE_MANIFESTS | INDEXES:
        raise StoreError(f"unsupported manifest media type {kind!r}")
    return kind


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


_ARCH_ALIASES = {
    "x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386", "i686": "386",
    "armhf": "arm", "armel": "arm",
}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


def normalize_platform(p: Platform) -> Platform:
    arch = _ARCH_ALIASES.get(p.architecture.lower(), p.architecture.lower())
    variant = p.variant.lower()
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    if arch == "arm" and variant in ("7", "v7", ""):
        variant = "v7"
    return Platform(p.os.lower(), arch, variant)


def parse_platform(text: str) -> Platform:
    """`linux/amd64`, `linux/arm64/v8`, `linux/arm/v7` -> Platform (normalised)."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ParseError("invalid platform, expected OS/ARCH[/VARIANT]", file=text or "<platform>")
    return normalize_platform(Platform(*parts))


def host_platform() -> Platform:
    """This machine's platform: linux/amd64 on an x86_64 host (the store's own idea of it)."""
    return normalize_platform(Platform("linux", host_architecture()))


def descriptor_platform(desc: Mapping[str, Any]) -> Platform | None:
    p = desc.get("platform")
    if not isinstance(p, Mapping) or not isinstance(p.get("os"), str) or not isinstance(p.get("architecture"), str):
        return None
    variant = p.get("variant")
    return normalize_platform(Platform(p["os"], p["architecture"], variant if isinstance(variant, str) else ""))


def select_manifest(index: Mapping[str, Any], want: Platform, *, what: str = "index") -> dict[str, Any]:
    """The descriptor of `index` (an OCI index or Docker manifest list) for platform `want`.

    Exact variant first, then (when `want` names none) any variant of the same os/architecture;
    entries that are not image manifests (attestations, nested indexes) are skipped. NotFound
    lists the platforms the index does offer.
    """
    want = normalize_platform(want)
    manifests = index.get("manifests")
    if not isinstance(manifests, Sequence):
        raise StoreError(f"{what} has no manifests list")
    candidates: list[tuple[int, dict[str, Any]]] = []
    offered: list[str] = []
    for desc in manifests:
        if not isinstance(desc, dict) or desc.get("mediaType", OCI_MANIFEST) not in IMAGE_MANIFESTS:
            continue
        p = descriptor_platform(desc)
        if p is None or p.os == "unknown":
            continue
        offered.append(str(p))
        if (p.os, p.architecture) != (want.os, want.architecture):
            continue
        if p.variant == want.variant:
            candidates.append((0, desc))
        elif not want.variant:
            candidates.append((1, desc))
    if not candidates:
        raise NotFound(
            f"{what} has no image for {want}",
            hint=f"it offers {', '.join(offered) or 'no platform'}; choose one with --platform",
        )
    candidates.sort(key=lambda c: c[0])
    return candidates[0][1]
