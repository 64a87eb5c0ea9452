"""Images as commits: manifest + config blobs, and a commit record naming the parent image.

An image is named by its manifest digest (`Image.digest`); its id, as Docker shows it, is the config
digest (`Image.id`). `commits/<manifest-hex>` records how the image came to be: parent manifest
digest, instruction, cache key, time, message, and what `pybuild images` lists (created, size), so
that listing reads no blobs. Objects before references: blobs, then the commit record; tags come
after (refs.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from layerstore.atomic import atomic_write
from layerstore.blobs import Blobs
from layerstore.digests import canonical_json, hex_of, is_digest, is_hex, load_json
from layerstore.layers import Layer, Layers
from layerstore.layout import Layout
from layerstore.oci import CONFIG, MANIFEST, ContainerConfig, Descriptor, HistoryEntry, ImageConfig, Manifest, check_history
from pybuild.errors import NotFound, StoreError

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_architecture() -> str:
    machine = os.uname().machine
    return _ARCH.get(machine, machine)


def rfc3339(seconds: float | None = None) -> str:
    """`2024-05-01T12:00:00Z` (whole seconds, UTC): how we write every time."""
    t = time.time() if seconds is None else seconds
    return datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch for an RFC 3339 time (as Docker and Go write them), or None."""
    if not text:
        return None
    t = text.strip().replace("Z", "+00:00")
    if "." in t:  # Go writes nanoseconds; Python takes at most microseconds
        head, _, rest = t.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        t = head + "." + digits[:6] + rest[len(digits):]
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class CommitRecord:
    """`commits/<manifest-hex>`: how an image came to be. `parent` is a manifest digest or None."""

    manifest: str
    config: str
    parent: str | None = None
    instruction: str = ""
    cache_key: str | None = None
    time: str = ""
    message: str | None = None
    created: str | None = None  # the image config's `created`
    size: int = 0  # uncompressed size of all layers (what `images` shows)
    layer_size: int = 0  # uncompressed size of the layers this commit added
    layers: int = 0

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, doc: Any, what: str) -> CommitRecord:
        if not isinstance(doc, dict) or not is_digest(str(doc.get("manifest"))) or not is_digest(str(doc.get("config"))):
            raise StoreError(f"{what}: malformed commit record")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True)
class Image:
    """A stored image: its manifest and config (values, plus the exact stored bytes) and its
    commit record (None only for an image stored without one)."""

    digest: str
    manifest: Manifest
    config: ImageConfig
    manifest_bytes: bytes = field(repr=False)
    config_bytes: bytes = field(repr=False)
    commit: CommitRecord | None = None

    @property
    def id(self) -> str:
        """The image id as Docker shows it: the config digest."""
        return self.manifest.config.digest

    @property
    def parent(self) -> str | None:
        return self.commit.parent if self.commit else None

    @property
    def layers(self) -> tuple[Layer, ...]:
        """Bottom first, each with its diff_id and blob."""
        return tuple(
            Layer(diff_id, d.digest, d.size, d.media_type)
            for diff_id, d in zip(self.config.diff_ids, self.manifest.layers, strict=True)
        )

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        return self.config.history


class Images:
    """Reading, writing and listing the images of one store."""

    def __init__(self, layout: Layout, blobs: Blobs, layers: Layers) -> None:
        self.layout = layout
        self.blobs = blobs
        self.layers = layers

    # ------------------------------------------------------------------------------ reading

    def get(self, manifest_digest: str) -> Image:
        """The image whose manifest is `manifest_digest`; blobs are verified as they are read."""
        hex_of(manifest_digest)
        if not self.blobs.has(manifest_digest):
            raise NotFound(f"image {manifest_digest} is not in the store")
        what = f"manifest {manifest_digest}"
        manifest_bytes = self.blobs.read(manifest_digest)
        manifest = Manifest.from_json(load_json(manifest_bytes, what), what)
        config_bytes = self.blobs.read(manifest.config.digest, size=manifest.config.size)
        config = ImageConfig.from_json(load_json(config_bytes, f"config {manifest.config.digest}"), f"config {manifest.config.digest}")
        check_history(config, manifest, f"image {manifest_digest}")
        return Image(manifest_digest, manifest, config, manifest_bytes, config_bytes, self.commit(manifest_digest))

    def commit(self, manifest_digest: str) -> CommitRecord | None:
        path = self.layout.commit(manifest_digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        what = f"commits/{path.name}"
        return CommitRecord.from_json(load_json(data, what), what)

    def exists(self, manifest_digest: str) -> bool:
        return self.layout.commit(manifest_digest).exists() or self.blobs.has(manifest_digest)

    def all_commits(self) -> Iterator[CommitRecord]:
        """Every commit record in the store (unreadable ones are skipped; fsck reports them)."""
        for name in sorted(self.layout.commits.iterdir()):
            if is_hex(name.name):
                try:
                    record = self.commit("sha256:" + name.name)
                except StoreError:
                    continue
                if record is not None:
                    yield record

    def by_id_prefix(self, prefix: str) -> list[str]:
        """Manifest digests of images whose manifest digest or id (config digest) starts with the
        hex `prefix`."""
        found = []
        for record in self.all_commits():
            if record.manifest[7:].startswith(prefix) or record.config[7:].startswith(prefix):
                found.append(record.manifest)
        return found

    def chain(self, image: Image) -> Iterator[Image]:
        """`image`, its parent, its grandparent, ... as far as the commit records go."""
        seen = set()
        current: Image | None = image
        while current is not None and current.digest not in seen:
            seen.add(current.digest)
            yield current
            parent = current.parent
            current = self.get(parent) if parent and self.exists(parent) else None

    # ------------------------------------------------------------------------------ writing

    def write(
        self,
        *,
        parent: Image | None,
        layers: Sequence[Layer] = (),
        config: ContainerConfig | None = None,
        history: Sequence[HistoryEntry] = (),
        created: str | None = None,
        instruction: str = "",
        cache_key: str | None = None,
        message: str | None = None,
        architecture: str | None = None,
        compression: str | None = None,
        author: str | None = None,
    ) -> Image:
        """Write a new image: `parent`'s layers + `layers`, `config` (default: the parent's),
        `parent`'s history + `history`, and its commit record. Returns the stored Image.
        `author` sets the config's `author` (Dockerfile MAINTAINER); None keeps the parent's.

        With no `history`, one entry (`instruction`, created now) is made, `empty_layer` when no
        layer is added. With `compression`, every layer is stored with that compression (umoci
        needs all-gzip images). The history invariant is checked before anything is written.
        Idempotent: the same inputs (including `created`) give the same digests.
        """
        created = created or rfc3339()
        history = [h if h.created else replace(h, created=created) for h in history]
        if not history:
            history = [HistoryEntry(created_by=instruction, created=created, empty_layer=not layers)] + [
                HistoryEntry(created_by=instruction, created=created) for _ in layers[1:]
            ]
        base = parent.config if parent else ImageConfig(architecture=architecture or host_architecture(), os="linux")
        all_layers = list(parent.layers if parent else ()) + list(layers)
        if compression:
            all_layers = [self.layers.recompress(layer, compression) for layer in all_layers]
        image_config = replace(
            base,
            created=created,
            config=config if config is not None else base.config,
            diff_ids=tuple(layer.diff_id for layer in all_layers),
            history=tuple(base.history) + tuple(history),
            architecture=architecture or base.architecture,
            author=author if author is not None else base.author,
        )
        manifest_preview = Manifest(Descriptor(CONFIG, "sha256:" + "0" * 64, 0), tuple(l.descriptor for l in all_layers))
        check_history(image_config, manifest_preview, "new image")
        config_bytes = canonical_json(image_config.to_json())
        config_blob = self.blobs.put(config_bytes)
        manifest = Manifest(Descriptor(CONFIG, config_blob.digest, config_blob.size), manifest_preview.layers, MANIFEST)
        manifest_bytes = canonical_json(manifest.to_json())
        manifest_blob = self.blobs.put(manifest_bytes)
        sizes = [self.layers.uncompressed_size(layer) for layer in all_layers]
        record = CommitRecord(
            manifest=manifest_blob.digest,
            config=config_blob.digest,
            parent=parent.digest if parent else None,
            instruction=instruction,
            cache_key=cache_key,
            time=rfc3339(),
            message=message,
            created=created,
            size=sum(sizes),
            layer_size=sum(sizes[len(all_layers) - len(layers):]),
            layers=len(all_layers),
        )
        record = self._write_commit(record)
        return Image(manifest_blob.digest, manifest, image_config, manifest_bytes, config_bytes, record)

    def register(self, manifest_digest: str, *, parent: str | None = None, instruction: str = "", message: str | None = None) -> Image:
        """Write the commit record of an image whose blobs are already stored (pull, load).
        Idempotent: an existing record is kept. Returns the image."""
        image = self.get(manifest_digest)
        if image.commit is not None:
            return image
        sizes = [self.layers.uncompressed_size(layer) for layer in image.layers]
        record = CommitRecord(
            manifest=manifest_digest,
            config=image.id,
            parent=parent,
            instruction=instruction,
            time=rfc3339(),
            message=message,
            created=image.config.created,
            size=sum(sizes),
            layer_size=sum(sizes),
            layers=len(sizes),
        )
        return replace(image, commit=self._write_commit(record))

    def _write_commit(self, record: CommitRecord) -> CommitRecord:
        """Write a commit record unless one exists (records, like blobs, are immutable; an
        existing one wins and has its mtime refreshed for gc's grace period)."""
        path = self.layout.commit(record.manifest)
        existing = self.commit(record.manifest)
        if existing is not None:
            path.touch()
            return existing
        atomic_write(path, canonical_json(record.to_json()), tmp_dir=self.layout.tmp)
        return record
