"""fsck: check the store's objects and references, as `git fsck` does. It changes nothing.

Errors (the store is damaged; one line each):
- a blob whose content does not hash to its name (a flipped byte, a truncated file);
- a tag, build-cache entry or container naming a missing or unreadable image;
- an image that a root reaches (layerstore.reach) with a missing or damaged manifest, config or
  layer, a layer of another size than its manifest says, a history that breaks the layer
  invariant, or a missing parent; with `full`, a layer whose uncompressed content does not hash
  to its diff_id;
- a commit record, layer record or index.json that is not what it should be (malformed, naming
  another config, index.json naming a manifest the store lacks), a missing or wrong `oci-layout`.
Warnings (harmless; `gc` tidies them): the same problems in images that nothing reaches (what a
crash or a killed gc leaves behind), index.json behind the refs (a tag change was interrupted
before index.json was rewritten), locks and temp files of killed processes, dangling cache
entries, layer records naming a blob that is gone.

A crash at any point of any pybuild command leaves only warnings: objects are written before the
references to them, and gc removes references before objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from layerstore.digests import is_digest, is_hex, load_json
from layerstore.gc import lock_files
from layerstore.images import CommitRecord
from layerstore.layers import Layer
from layerstore.layout import OCI_LAYOUT
from layerstore.reach import container_images, mark, roots
from layerstore.store import Store
from pybuild.errors import DigestMismatch, PybuildError

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" or "warning"
    message: str


def check(store: Store, *, full: bool = False) -> list[Problem]:
    """Every problem found, errors and warnings, in a stable order."""
    return list(_Checker(store, full).run())


class _Checker:
    def __init__(self, store: Store, full: bool) -> None:
        self.store = store
        self.full = full
        self.damaged: set[str] = set()  # blobs already reported damaged or missing
        self.checked: set[str] = set()  # manifest digests
        self.layers_checked: set[str] = set()
        self.reachable: set[str] = set()
        self.bad_records: set[str] = set()  # commit records already reported unreadable

    def run(self) -> Iterator[Problem]:
        store, layout = self.store, self.store.layout
        yield from self._layout_files()
        for name in sorted(os.listdir(layout.blobs)):
            if not is_hex(name):
                if not name.startswith("."):
                    yield Problem(WARNING, f"blobs/sha256/{name}: not a digest name")
                continue
            try:
                store.blobs.verify("sha256:" + name)
            except PybuildError as e:
                self.damaged.add("sha256:" + name)
                yield Problem(ERROR, str(e))
        self.reachable = mark(store, roots(store)).manifests
        records: dict[str, CommitRecord] = {}
        for name in sorted(os.listdir(layout.commits)):
            if is_hex(name):
                try:
                    record = store.images.commit("sha256:" + name)
                except PybuildError as e:
                    self.bad_records.add("sha256:" + name)
                    yield Problem(ERROR, str(e))
                    continue
                if record is not None:
                    records["sha256:" + name] = record

        for rel, value in self._tag_files():
            if value is None:
                yield Problem(ERROR, f"{rel}: does not hold a digest")
            else:
                yield from self._image(value, rel)
        for key, digest in store.cache.items():
            if not is_digest(digest) or not store.blobs.has(digest):
                yield Problem(WARNING, f"cache/{key}: names missing image {digest[:80]} (gc removes the entry)")
            else:
                yield from self._image(digest, f"cache/{key}")
        for cid, digest in container_images(store).items():
            yield from self._image(digest, f"container {cid[:12]}")
        for digest, record in records.items():
            yield from self._commit(digest, record)
        yield from self._layer_records()
        yield from self._index()
        leftovers = [n for n in os.listdir(layout.tmp)]
        if leftovers:
            yield Problem(WARNING, f"tmp/: {len(leftovers)} leftover temp entries (gc removes them)")

    # -- images ----------------------------------------------------------------------------------

    def _image(self, digest: str, what: str) -> Iterator[Problem]:
        """Check the image `digest` once: an error where a root reaches it, else a warning."""
        if digest in self.checked:
            return
        self.checked.add(digest)
        strict = digest in self.reachable
        severity = ERROR if strict else WARNING
        prefix = what if strict else f"unreachable {what}"
        if digest in self.damaged:
            return  # its blob's own line says it
        if not self.store.blobs.has(digest):
            self.damaged.add(digest)
            yield Problem(severity, f"{prefix}: manifest {digest} is missing")
            return
        try:
            image = self.store.images.get(digest)
        except PybuildError as e:
            said = digest in self.bad_records or (isinstance(e, DigestMismatch) and e.what.removeprefix("blob ") in self.damaged)
            if not said:
                yield Problem(severity, f"{prefix}: {e}")
            return
        for layer in image.layers:
            problem = self._layer(layer)
            if problem is not None:
                yield Problem(severity, f"{prefix}: {problem}")
        if image.parent and not self.store.images.exists(image.parent):
            yield Problem(severity, f"{prefix}: parent {image.parent} is missing")

    def _layer(self, layer: Layer) -> str | None:
        """What is wrong with one layer, said once per blob."""
        if layer.digest in self.damaged:
            return None  # its blob's own line says it
        if not self.store.blobs.has(layer.digest):
            self.damaged.add(layer.digest)
            return f"layer {layer.digest} is missing"
        size = self.store.blobs.size(layer.digest)
        if size != layer.size:
            return f"layer {layer.digest} is {size} bytes, its manifest says {layer.size}"
        if self.full and layer.digest not in self.layers_checked:
            self.layers_checked.add(layer.digest)
            try:
                with self.store.layers.open_tar(layer):
                    pass  # the block's end reads the rest and checks digest and diff_id
            except PybuildError as e:
                return str(e) if layer.digest in str(e) else f"layer {layer.digest}: {e}"
        return None

    def _commit(self, digest: str, record: CommitRecord) -> Iterator[Problem]:
        if record.manifest != digest:
            yield Problem(ERROR, f"commit {digest}: the record names manifest {record.manifest}")
            return
        yield from self._image(digest, f"commit {digest}")
        try:
            image_id = self.store.images.get(digest).id if self.store.blobs.has(digest) else None
        except PybuildError:
            image_id = None  # said above
        if image_id is not None and image_id != record.config:
            yield Problem(ERROR, f"commit {digest}: records config {record.config}, the manifest names {image_id}")

    # -- references and records ------------------------------------------------------------------

    def _tag_files(self) -> Iterator[tuple[str, str | None]]:
        layout = self.store.layout
        for dirpath, dirs, files in os.walk(layout.tags):
            dirs.sort()
            for f in sorted(files):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, layout.root)
                if f.endswith(".lock"):
                    continue  # said by _index's lock check
                try:
                    value = open(path).read().strip()
                except (OSError, UnicodeDecodeError):
                    value = ""
                yield rel, value if is_digest(value) else None

    def _layer_records(self) -> Iterator[Problem]:
        layers = self.store.layout.layers
        for name in sorted(os.listdir(layers)):
            if not (name.endswith(".json") and is_hex(name[:-5])):
                continue
            try:
                layer = self.store.layers.known("sha256:" + name[:-5])
            except PybuildError as e:
                yield Problem(ERROR, str(e))
                continue
            if layer is None:
                yield Problem(WARNING, f"layers/{name}: names no blob the store holds (gc removes it)")

    def _layout_files(self) -> Iterator[Problem]:
        path = self.store.layout.root / "oci-layout"
        try:
            ok = path.read_bytes().strip() == OCI_LAYOUT
        except OSError:
            ok = False
        if not ok:
            yield Problem(ERROR, "oci-layout: missing or not {\"imageLayoutVersion\":\"1.0.0\"} (OCI tools cannot read the store)")

    def _index(self) -> Iterator[Problem]:
        store, root = self.store, self.store.layout.root
        try:
            doc = load_json(store.layout.index.read_bytes(), "index.json")
            entries = doc.get("manifests") if isinstance(doc, dict) else None
            if not isinstance(entries, list):
                raise PybuildError("index.json: no manifests list")
        except (OSError, PybuildError) as e:
            yield Problem(ERROR, f"{e} (the next tag, rmi or gc rewrites it)" if isinstance(e, PybuildError)
                          else f"index.json: cannot be read: {e.strerror}")
            return
        for entry in entries:
            digest = entry.get("digest") if isinstance(entry, dict) else None
            if digest in self.damaged:
                continue  # said where it was found missing or damaged
            if not isinstance(digest, str) or not is_digest(digest) or not store.blobs.has(digest):
                yield Problem(ERROR, f"index.json: names manifest {str(digest)[:80]} which the store lacks "
                                     "(OCI tools fail on it; the next tag, rmi or gc rewrites index.json)")
        if not store.tags.index_is_current():
            yield Problem(WARNING, "index.json does not match refs/ (an interrupted tag change; the next tag, rmi or gc rewrites it)")
        for lock in lock_files(root):
            yield Problem(WARNING, f"{lock.relative_to(root)}: lock left by an interrupted change (gc removes it)")
