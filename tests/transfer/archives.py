"""Hand-made image archives for the load tests, honest or hostile: layer tars with any entry names,
OCI layouts whose digests, sizes and diff_ids can each be made to lie."""

from __future__ import annotations


import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from layerstore.registry import RegistryClient
from layerstore.registry_http import BodySource
from layerstore.transfer_media import DOCKER_MANIFEST, OCI_MANIFEST
from layerstore.transfer_verify import digest_of


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    mode: int = 0o644


def layer_tar(entries: list[Entry]) -> bytes:
    """A tar with exactly these entries (names as given, `../x` and `/x` included)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.type
            info.mode = e.mode if e.type != tarfile.DIRTYPE else 0o755
            info.linkname = e.linkname
            info.size = len(e.data) if e.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(e.data) if e.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


LAYER_TYPES = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
               "none": "application/vnd.oci.image.layer.v1.tar"}


@dataclass
class Layout:
    """An OCI layout being made: call `add_image`, then `write_dir` or `write_tar`. `blobs` can be
    edited in between to make it lie."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: list[dict[str, object]] = field(default_factory=list)

    def blob(self, data: bytes) -> dict[str, object]:
        d = sha(data)
        self.blobs[d] = data
        return {"digest": d, "size": len(data)}

    def add_image(self, tars: list[bytes], *, name: str | None = "hostile:1", compression: str = "gzip",
                  diff_ids: list[str] | None = None, store_layers: bool = True) -> dict[str, object]:
        layers = []
        for t in tars:
            packed = compress(t, compression)
            desc = {"mediaType": LAYER_TYPES[compression], "digest": sha(packed), "size": len(packed)}
            if store_layers:
                self.blobs[sha(packed)] = packed
            layers.append(desc)
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids if diff_ids is not None else [sha(t) for t in tars]},
            "history": [{"created_by": f"layer {i}"} for i in range(len(tars))],
        }).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **self.blob(config)},
            "layers": layers,
        }).encode()
        desc: dict[str, object] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **self.blob(manifest)}
        if name:
            desc["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.manifests.append(desc)
        return desc

    def rewrite_manifest(self, edit: Callable[[bytes], bytes], index: int = 0) -> None:
        """Replace image `index`'s manifest by `edit(manifest)`, named by its new digest (so the
        index is honest and only the manifest lies)."""
        data = edit(self.blobs.pop(str(self.manifests[index]["digest"])))
        self.manifests[index].update(self.blob(data))

    def files(self) -> dict[str, bytes]:
        out = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
               "index.json": json.dumps({"schemaVersion": 2, "manifests": self.manifests}).encode()}
        for d, data in self.blobs.items():
            out["blobs/sha256/" + d.split(":")[1]] = data
        return out

    def write_dir(self, root: Path) -> Path:
        for name, data in self.files().items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root

    def write_tar(self, path: Path, *, truncate_at: int | None = None) -> Path:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in self.files().items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        data = buf.getvalue()
        path.write_bytes(data if truncate_at is None else data[:truncate_at])
        return path


def simple_layer(text: bytes = b"hello\n") -> bytes:
    return layer_tar([Entry("etc", type=tarfile.DIRTYPE), Entry("etc/greeting", text)])


def body(data: bytes) -> BodySource:
    return BodySource(lambda: io.BytesIO(data), len(data))


def put_image(client: RegistryClient, repo: str, tag: str, layer: bytes, *, arch: str = "amd64",
              media_type: str = OCI_MANIFEST, diff_id: str | None = None) -> tuple[str, bytes]:
    """Upload a one-layer image (`layer` gzip); returns (manifest digest, manifest bytes).
    `diff_id` makes its config lie about the layer."""
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [diff_id or digest_of(gzip.decompress(layer))]}}).encode()
    for blob in (layer, config):
        client.upload_blob(repo, digest_of(blob), body(blob))
    docker = media_type == DOCKER_MANIFEST
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json" if docker else
                   "application/vnd.oci.image.config.v1+json", "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker else
                    "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(layer), "size": len(layer)}],
    }).encode()
    return client.put_manifest(repo, tag, manifest, media_type), manifest


def put_layered_image(client: RegistryClient, repo: str, tag: str, tars: list[bytes], *,
                      compression: str = "zstd") -> str:
    """Upload an OCI image of these layer tars (compressed as asked, history included); returns the
    manifest digest."""
    packed = [compress(t, compression) for t in tars]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in tars]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(tars))],
    }).encode()
    for blob in (*packed, config):
        client.upload_blob(repo, digest_of(blob), body(blob))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPES[compression], "digest": sha(p), "size": len(p)} for p in packed],
    }).encode()
    return client.put_manifest(repo, tag, manifest, OCI_MANIFEST)
