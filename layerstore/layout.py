"""Where everything lives in a store root (DESIGN.md section 2), and creating that layout.

The root is itself an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`), so OCI tools
read it directly; everything else sits beside those in directories OCI tools ignore.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from layerstore.atomic import atomic_write
from layerstore.digests import canonical_json, hex_of
from layerstore.locks import RefChanged, update_ref

OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})
EMPTY_INDEX = canonical_json({"manifests": [], "mediaType": "application/vnd.oci.image.index.v1+json", "schemaVersion": 2})
DIRECTORIES = ("blobs/sha256", "refs/tags", "logs/refs/tags", "commits", "layers", "unpacked", "cache", "containers", "volumes", "tmp")


@dataclass(frozen=True)
class Layout:
    """The paths of one store. Pure: constructing it touches nothing."""

    root: Path

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    def blob(self, digest: str) -> Path:
        return self.blobs / hex_of(digest)

    @property
    def tags(self) -> Path:
        return self.root / "refs" / "tags"

    @property
    def tag_logs(self) -> Path:
        return self.root / "logs" / "refs" / "tags"

    @property
    def commits(self) -> Path:
        return self.root / "commits"

    def commit(self, manifest_digest: str) -> Path:
        return self.commits / hex_of(manifest_digest)

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    def layer_record(self, diff_id: str) -> Path:
        return self.layers / (hex_of(diff_id) + ".json")

    @property
    def unpacked(self) -> Path:
        return self.root / "unpacked"

    def unpacked_layer(self, diff_id: str) -> Path:
        return self.unpacked / hex_of(diff_id)

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def index(self) -> Path:
        return self.root / "index.json"


def ensure_layout(layout: Layout) -> None:
    """Create whatever part of the layout is missing. Idempotent, and safe to run concurrently."""
    root = layout.root
    if (root / "oci-layout").exists() and layout.tmp.is_dir() and layout.index.exists():
        return
    for d in DIRECTORIES:
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(layout.tmp, 0o700)
    if not (root / "oci-layout").exists():
        atomic_write(root / "oci-layout", OCI_LAYOUT + b"\n", tmp_dir=layout.tmp)
    if not layout.index.exists():
        # index.json is rewritten under its own ref lock (refs.py); create it the same way, and
        # never over an index another process has just written.
        try:
            update_ref(layout.index, EMPTY_INDEX.decode(), expected=None)
        except RefChanged:
            pass
