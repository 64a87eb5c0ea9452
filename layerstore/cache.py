"""Build cache entries: `cache/<key-hex>` -> the manifest digest of a build step's image.

The key is the builder's (a sha256 of parent key, expanded instruction, env, ...); this module only
stores and finds. Entries are gc roots until pruned (`gc --prune-cache`). A `get` whose image has
gone (damaged store) is a miss, not an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from layerstore.atomic import atomic_write
from layerstore.blobs import Blobs
from layerstore.digests import is_digest, is_hex
from layerstore.layout import Layout
from pybuild.errors import StoreError


def _key_hex(key: str) -> str:
    hex_ = key.removeprefix("sha256:")
    if not is_hex(hex_):
        raise StoreError(f"build cache key {key[:80]!r} is not a sha256 hex digest")
    return hex_


class BuildCache:
    def __init__(self, layout: Layout, blobs: Blobs) -> None:
        self.layout = layout
        self.blobs = blobs

    def get(self, key: str) -> str | None:
        """The manifest digest cached under `key`, or None (also when that image is missing)."""
        try:
            value = (self.layout.cache / _key_hex(key)).read_text().strip()
        except FileNotFoundError:
            return None
        if not is_digest(value) or not self.blobs.has(value):
            return None
        return value

    def put(self, key: str, manifest_digest: str) -> None:
        """Cache `manifest_digest` under `key` (replacing an older entry). The image's objects must
        be stored first (objects before references)."""
        if not is_digest(manifest_digest) or not self.blobs.has(manifest_digest):
            raise StoreError(f"cannot cache {manifest_digest}: no such manifest in the store")
        atomic_write(self.layout.cache / _key_hex(key), (manifest_digest + "\n").encode(), tmp_dir=self.layout.tmp)

    def delete(self, key: str) -> None:
        (self.layout.cache / _key_hex(key)).unlink(missing_ok=True)

    def items(self) -> Iterator[tuple[str, str]]:
        """(key hex, manifest digest) of every well-formed entry."""
        for name in sorted(os.listdir(self.layout.cache)):
            if not is_hex(name):
                continue
            try:
                value = (self.layout.cache / name).read_text().strip()
            except FileNotFoundError:
                continue
            yield name, value
