"""The OCI image spec documents as frozen values: Descriptor, Manifest, ImageConfig (with Docker's
extra container-config fields), HistoryEntry. Each is parsed and serialized here and nowhere else.

Parsing keeps fields we do not model in `extra`, so an image read from elsewhere and written back
(e.g. with one more layer) loses nothing. Serialization is canonical (`digests.canonical_json`);
a document whose digest is already known is never re-serialized: `Image` keeps the stored bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from layerstore.digests import expect, is_digest
from pybuild.errors import StoreError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST_TYPES = (MANIFEST, DOCKER_MANIFEST)
REF_NAME = "org.opencontainers.image.ref.name"


def _field(doc: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    return expect(doc.get(key), kind, f"{what}: field {key!r}")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @classmethod
    def from_json(cls, doc: Any, what: str) -> Descriptor:
        if not isinstance(doc, dict):
            raise StoreError(f"{what}: descriptor is not an object")
        digest = _field(doc, "digest", str, what)
        size = _field(doc, "size", int, what)
        if not is_digest(digest) or size < 0:
            raise StoreError(f"{what}: bad descriptor {digest[:80]!r} size {size}")
        return cls(_field(doc, "mediaType", str, what), digest, size, doc.get("annotations") or None)


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = MANIFEST
    annotations: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @classmethod
    def from_json(cls, doc: Any, what: str) -> Manifest:
        if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
            raise StoreError(f"{what}: not an image manifest (schemaVersion 2)")
        media_type = doc.get("mediaType", MANIFEST)
        if media_type not in MANIFEST_TYPES:
            raise StoreError(f"{what}: unsupported manifest media type {media_type!r}")
        layers = tuple(Descriptor.from_json(d, what) for d in _field(doc, "layers", list, what))
        return cls(Descriptor.from_json(doc.get("config"), what), layers, media_type, doc.get("annotations") or None)


@dataclass(frozen=True)
class HistoryEntry:
    """One instruction of an image's history; `empty_layer` for metadata-only steps."""

    created_by: str = ""
    created: str | None = None
    comment: str | None = None
    author: str | None = None
    empty_layer: bool = False

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"created_by": self.created_by}
        for key in ("created", "comment", "author"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.empty_layer:
            d["empty_layer"] = True
        return d

    @classmethod
    def from_json(cls, doc: Any) -> HistoryEntry:
        doc = doc if isinstance(doc, dict) else {}
        return cls(
            created_by=str(doc.get("created_by", "")),
            created=doc.get("created"),
            comment=doc.get("comment"),
            author=doc.get("author"),
            empty_layer=bool(doc.get("empty_layer", False)),
        )


# Docker's container config keys, in the spelling the JSON uses; Healthcheck, Shell and OnBuild
# are Docker-only (OCI has no field for them) and are written all the same, as Docker does.
_CONTAINER_FIELDS = {
    "user": "User",
    "exposed_ports": "ExposedPorts",
    "env": "Env",
    "entrypoint": "Entrypoint",
    "cmd": "Cmd",
    "volumes": "Volumes",
    "working_dir": "WorkingDir",
    "labels": "Labels",
    "stop_signal": "StopSignal",
    "healthcheck": "Healthcheck",
    "shell": "Shell",
    "on_build": "OnBuild",
    "args_escaped": "ArgsEscaped",
}


@dataclass(frozen=True)
class ContainerConfig:
    """The `config` object of an image config: what a container of the image runs with.
    None means "not set" (and is not written)."""

    user: str | None = None
    exposed_ports: Mapping[str, Any] | None = None
    env: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: Mapping[str, Any] | None = None
    working_dir: str | None = None
    labels: Mapping[str, str] | None = None
    stop_signal: str | None = None
    healthcheck: Mapping[str, Any] | None = None
    shell: tuple[str, ...] | None = None
    on_build: tuple[str, ...] | None = None
    args_escaped: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.extra)
        for attr, key in _CONTAINER_FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                d[key] = list(value) if isinstance(value, tuple) else (dict(value) if isinstance(value, Mapping) else value)
        return d

    @classmethod
    def from_json(cls, doc: Any) -> ContainerConfig:
        doc = doc if isinstance(doc, dict) else {}
        known = {key: attr for attr, key in _CONTAINER_FIELDS.items()}
        kwargs: dict[str, Any] = {}
        for key, value in doc.items():
            attr = known.get(key)
            if attr is None:
                continue
            kwargs[attr] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs, extra={k: v for k, v in doc.items() if k not in known})

    def env_dict(self) -> dict[str, str]:
        """Env as a mapping (later entries win, as the kernel's environment would have it)."""
        out: dict[str, str] = {}
        for item in self.env or ():
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def with_env(self, **values: str) -> ContainerConfig:
        """A copy with `values` set in Env (replacing earlier values of the same names in place)."""
        env = self.env_dict()
        env.update(values)
        return dataclasses.replace(self, env=tuple(f"{k}={v}" for k, v in env.items()))


@dataclass(frozen=True)
class ImageConfig:
    """An image config document. `diff_ids` are the layers bottom first; `history` holds one entry
    per instruction (the layer invariant is checked by `check_history`)."""

    architecture: str = "amd64"
    os: str = "linux"
    created: str | None = None
    author: str | None = None
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    variant: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.extra)
        d.update(
            architecture=self.architecture,
            os=self.os,
            config=self.config.to_json(),
            rootfs={"type": "layers", "diff_ids": list(self.diff_ids)},
            history=[h.to_json() for h in self.history],
        )
        for key in ("created", "author", "variant"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_json(cls, doc: Any, what: str) -> ImageConfig:
        if not isinstance(doc, dict):
            raise StoreError(f"{what}: image config is not an object")
        rootfs = doc.get("rootfs")
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
            raise StoreError(f"{what}: image config has no rootfs.diff_ids")
        diff_ids = tuple(rootfs["diff_ids"])
        if not all(isinstance(d, str) and is_digest(d) for d in diff_ids):
            raise StoreError(f"{what}: malformed diff_id in rootfs")
        modelled = {"architecture", "os", "created", "author", "config", "rootfs", "history", "variant"}
        return cls(
            architecture=str(doc.get("architecture", "")),
            os=str(doc.get("os", "")),
            created=doc.get("created"),
            author=doc.get("author"),
            config=ContainerConfig.from_json(doc.get("config")),
            diff_ids=diff_ids,
            history=tuple(HistoryEntry.from_json(h) for h in doc.get("history") or ()),
            variant=doc.get("variant"),
            extra={k: v for k, v in doc.items() if k not in modelled},
        )


def check_history(config: ImageConfig, manifest: Manifest | None, what: str) -> None:
    """The layer invariant: non-empty history entries == len(diff_ids) == len(manifest.layers).
    (An image with no history at all, as some imported ones have, only needs the second part.)"""
    non_empty = sum(1 for h in config.history if not h.empty_layer)
    if manifest is not None and len(manifest.layers) != len(config.diff_ids):
        raise StoreError(f"{what}: manifest has {len(manifest.layers)} layers but config has {len(config.diff_ids)} diff_ids")
    if config.history and non_empty != len(config.diff_ids):
        raise StoreError(f"{what}: history has {non_empty} non-empty entries but the image has {len(config.diff_ids)} layers")
