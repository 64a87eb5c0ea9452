"""Tags as refs, with a reflog, and the OCI `index.json` derived from them.

`refs/tags/<repository>/:<tag>` holds `sha256:<manifest digest>`; the repository is the full
normalised name (`docker.io/library/busybox`) and the `:` keeps tag files apart from repository
directories. Every change is one `locks.update_ref` (compare-and-swap under `<ref>.lock`), which
appends `<old> <new> <time> <message>` to `logs/refs/tags/...` under the lock before the new value
is published, as git does (`-` stands for "none"). After each change `index.json` is rebuilt from all refs under its own lock,
with each tag's familiar name (`app:1`) as `org.opencontainers.image.ref.name`, which is what
`skopeo inspect oci:$ROOT:app:1` looks up. Refs are the truth; index.json is derived from them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from layerstore.atomic import atomic_write
from layerstore.blobs import Blobs
from layerstore.digests import canonical_json, is_digest, load_json
from layerstore.layout import Layout
from layerstore.locks import RefChanged, locked_ref, update_ref
from layerstore.oci import INDEX, MANIFEST, REF_NAME
from layerstore.reference import Reference, parse_reference
from pybuild.errors import NotFound, PybuildError, StoreError

NONE = "-"
_TAG_PREFIX = ":"


@dataclass(frozen=True)
class Tag:
    ref: Reference
    digest: str

    @property
    def name(self) -> str:
        return self.ref.familiar


@dataclass(frozen=True)
class ReflogEntry:
    old: str | None
    new: str | None
    time: int
    message: str


def _reference(name: str | Reference) -> Reference:
    ref = parse_reference(name) if isinstance(name, str) else name
    if ref.tag is None:
        raise StoreError(f"{ref.familiar}: a tag name is needed here, not a digest")
    return ref


class Tags:
    """The tags of one store."""

    def __init__(self, layout: Layout, blobs: Blobs) -> None:
        self.layout = layout
        self.blobs = blobs

    def path(self, name: str | Reference) -> Path:
        ref = _reference(name)
        return self.layout.tags / ref.repository / (_TAG_PREFIX + str(ref.tag))

    def log_path(self, name: str | Reference) -> Path:
        ref = _reference(name)
        return self.layout.tag_logs / ref.repository / (_TAG_PREFIX + str(ref.tag))

    def get(self, name: str | Reference) -> str | None:
        """The manifest digest `name` points at, or None if there is no such tag."""
        try:
            value = self.path(name).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return value if is_digest(value) else None

    def set(self, name: str | Reference, digest: str, *, message: str = "tag", expected: str | None | object = ...) -> str | None:
        """Point `name` at manifest `digest` and return what it pointed at before. With `expected`,
        a compare-and-swap (RefChanged if the tag moved meanwhile). The manifest must be stored."""
        if not self.blobs.has(digest):
            raise NotFound(f"image {digest} is not in the store")
        old = self._update(name, digest, message, expected)
        self.write_index()
        return old

    def delete(self, name: str | Reference, *, message: str = "untag") -> str:
        """Remove tag `name`; NotFound if it does not exist. Returns the digest it named."""
        old = self._update(name, None, message, ...)
        if old is None:
            raise NotFound(f"tag {_reference(name).familiar} does not exist")
        self.write_index()
        return old

    def _update(self, name: str | Reference, new: str | None, message: str, expected: object) -> str | None:
        ref = _reference(name)
        return update_ref(
            self.path(ref), new, expected=expected, what=f"tag {ref.familiar}",
            before=lambda old: self._append_log(ref, old, new, message),
        )

    def _append_log(self, ref: Reference, old: str | None, new: str | None, message: str) -> None:
        # Under the ref's lock, so read-modify-write cannot race with another update of this tag.
        path = self.log_path(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            before = path.read_bytes()
        except FileNotFoundError:
            before = b""
        line = f"{old or NONE} {new or NONE} {int(time.time())} {' '.join(message.split())}\n"
        atomic_write(path, before + line.encode(), tmp_dir=self.layout.tmp)

    def log(self, name: str | Reference) -> list[ReflogEntry]:
        """The tag's history, oldest first."""
        try:
            lines = self.log_path(name).read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            parts = line.split(" ", 3)
            if len(parts) < 3:
                continue
            old, new, when = parts[:3]
            out.append(ReflogEntry(None if old == NONE else old, None if new == NONE else new, int(when), parts[3] if len(parts) > 3 else ""))
        return out

    def all(self) -> Iterator[Tag]:
        """Every tag, sorted by repository then tag."""
        root = self.layout.tags
        found = []
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                if not f.startswith(_TAG_PREFIX) or f.endswith(".lock"):
                    continue
                repository = os.path.relpath(dirpath, root)
                try:
                    ref = parse_reference(f"{repository}{f}")
                except PybuildError:  # a damaged name: fsck reports it
                    continue
                digest = self.get(ref)
                if digest is not None:
                    found.append(Tag(ref, digest))
        found.sort(key=lambda t: (t.ref.repository, t.ref.tag or ""))
        return iter(found)

    def of(self, digest: str) -> list[Tag]:
        """The tags that point at manifest `digest`."""
        return [t for t in self.all() if t.digest == digest]

    # ---------------------------------------------------------------------------- index.json

    def index_document(self) -> bytes:
        """The index.json that the current refs imply."""
        manifests = []
        for tag in self.all():
            try:
                size = self.blobs.size(tag.digest)
                media_type = load_json(self.blobs.path(tag.digest).read_bytes(), tag.digest).get("mediaType", MANIFEST)
            except (NotFound, StoreError, AttributeError):
                continue
            manifests.append({"mediaType": media_type, "digest": tag.digest, "size": size, "annotations": {REF_NAME: tag.name}})
        return canonical_json({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests})

    def write_index(self) -> None:
        """Rebuild index.json from the refs, under `index.json.lock`, so that concurrent rebuilds
        serialize and the last one sees every ref committed before it began."""
        with locked_ref(self.layout.index) as held:
            doc = self.index_document().decode()
            if held.current != doc:
                held.commit(doc)

    def index_is_current(self) -> bool:
        try:
            return self.layout.index.read_bytes().strip() == self.index_document()
        except FileNotFoundError:
            return False


__all__ = ["Tag", "Tags", "ReflogEntry", "RefChanged"]
