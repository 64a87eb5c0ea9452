"""The store API: blobs, images as commits, resolution, tags with reflog and index.json, build
cache, gc and fsck."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from layerstore.fsck import check
from layerstore.gc import collect
from layerstore.images import Image
from layerstore.locks import RefChanged
from layerstore.oci import ContainerConfig, HistoryEntry
from layerstore.store import Store
from pybuild.errors import DigestMismatch, NotFound, StoreError
from tests.layerstore.helpers import make_tree


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(tmp_path / "s") as s:
        yield s  # type: ignore[misc]


def _image(store: Store, tmp_path: Path, content: str, parent: Image | None = None, step: str = "RUN x") -> Image:
    tree = make_tree(tmp_path / f"t-{content}", {content: content})
    return store.commit(tree, parent=parent, created_by=step)


def _flip_byte(path: Path, offset: int = -10) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_blob_put_is_idempotent_and_verified(store: Store) -> None:
    w = store.blobs.put(b"hello")
    assert store.blobs.put(b"hello") == w
    assert store.blobs.read(w.digest) == b"hello"
    assert oct(store.blobs.path(w.digest).stat().st_mode & 0o777) == "0o444"
    with pytest.raises(DigestMismatch):
        store.blobs.put(b"hellO", expected=w.digest)
    assert os.listdir(store.tmp) == []


def test_hostile_digest_never_becomes_a_path(store: Store) -> None:
    with pytest.raises(StoreError, match="malformed digest"):
        store.blobs.read("sha256:../../etc/passwd")


def test_flipped_byte_is_refused_on_read_and_reported_by_fsck(store: Store, tmp_path: Path) -> None:
    image = _image(store, tmp_path, "a")
    store.tag(image, "app:1")
    layer = image.layers[0]
    os.rename(store.layers.unpacked_path(layer.diff_id), tmp_path / "moved")
    assert check(store) == []
    _flip_byte(store.blobs.path(layer.digest))
    with pytest.raises(DigestMismatch):
        store.blobs.read(layer.digest)
    with pytest.raises(DigestMismatch):
        store.layers.unpack(layer)
    problems = check(store)
    assert [p.severity for p in problems] == ["error"]
    assert layer.digest in problems[0].message and "digest mismatch" in problems[0].message


def test_fsck_full_checks_diff_ids(store: Store, tmp_path: Path) -> None:
    image = _image(store, tmp_path, "a")
    store.tag(image, "app:1")
    assert check(store, full=True) == []


def test_images_chain_history_and_resolution(store: Store, tmp_path: Path) -> None:
    base = _image(store, tmp_path, "a", step="FROM scratch")
    config = ContainerConfig(
        env=("PATH=/bin",), cmd=("sh",), healthcheck={"Test": ["CMD", "true"], "Interval": 1000000000},
        shell=("/bin/sh", "-c"), on_build=("RUN echo hi",), labels={"k": "v"},
    )
    meta = store.write_image(parent=base, config=config, instruction="ENV PATH=/bin")
    top = _image(store, tmp_path, "b", parent=meta, step="RUN make")
    assert [h.empty_layer for h in top.history] == [False, True, False]
    assert len(top.layers) == 2 and top.layers[0] == base.layers[0]
    assert top.parent == meta.digest and meta.parent == base.digest
    assert [i.digest for i in store.images.chain(top)] == [top.digest, meta.digest, base.digest]
    stored = json.loads(store.blobs.read(top.id))
    assert stored["config"]["Healthcheck"]["Test"] == ["CMD", "true"]
    assert stored["config"]["Shell"] == ["/bin/sh", "-c"] and stored["config"]["OnBuild"] == ["RUN echo hi"]
    store.tag(top, "app:1")
    for name in ("app:1", "app:1@" + top.digest, top.digest, top.id, top.id[7:19], top.digest[7:15], "docker.io/library/app:1"):
        assert store.resolve(name).digest == top.digest, name
    with pytest.raises(NotFound):
        store.resolve("app:2")
    assert store.lower_dirs(top) == [store.layers.unpacked_path(top.layers[1].diff_id), store.layers.unpacked_path(base.layers[0].diff_id)]


def test_history_invariant_is_checked_before_writing(store: Store, tmp_path: Path) -> None:
    base = _image(store, tmp_path, "a")
    before = set(store.blobs.all())
    with pytest.raises(StoreError, match="non-empty entries"):
        store.write_image(parent=base, layers=[base.layers[0]], history=[HistoryEntry("X", empty_layer=True)])
    assert set(store.blobs.all()) == before


def test_short_ids_must_be_long_enough_and_unambiguous(store: Store, tmp_path: Path) -> None:
    a = _image(store, tmp_path, "a")
    with pytest.raises(NotFound):
        store.resolve(a.id[7:10])  # 3 characters: too short to be an id (and no such tag)
    # two commit records whose ids share a prefix (forged: real ones would need ~300 images)
    from layerstore.digests import canonical_json

    for fake in ("abcd" + "0" * 60, "abcd" + "1" * 60):
        record = {"manifest": "sha256:" + fake, "config": "sha256:" + fake}
        store.layout.commit("sha256:" + fake).write_bytes(canonical_json(record))
    with pytest.raises(StoreError, match="ambiguous"):
        store.resolve("abcd")


def test_tags_reflog_cas_and_index(store: Store, tmp_path: Path) -> None:
    a = _image(store, tmp_path, "a")
    b = _image(store, tmp_path, "b")
    assert store.tags.set("app:1", a.digest) is None
    assert store.tags.set("app:1", b.digest, expected=a.digest) == a.digest
    with pytest.raises(RefChanged):
        store.tags.set("app:1", a.digest, expected=a.digest)
    store.tags.set("localhost:5000/x/y:z", a.digest)
    log = store.tags.log("app:1")
    assert [(e.old, e.new) for e in log] == [(None, a.digest), (a.digest, b.digest)]
    index = json.loads(store.layout.index.read_text())
    names = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    assert names == {"app:1": b.digest, "localhost:5000/x/y:z": a.digest}
    assert store.tags.delete("app:1") == b.digest
    assert store.tags.get("app:1") is None
    assert store.tags.log("app:1")[-1].new is None
    assert store.tags.index_is_current()


def test_build_cache_get_put(store: Store, tmp_path: Path) -> None:
    a = _image(store, tmp_path, "a")
    key = "ab" * 32
    assert store.cache.get(key) is None
    store.cache.put(key, a.digest)
    assert store.cache.get("sha256:" + key) == a.digest
    with pytest.raises(StoreError):
        store.cache.put("not-a-key", a.digest)
    with pytest.raises(StoreError):
        store.cache.put(key, "sha256:" + "0" * 64)


def test_gc_keeps_what_tags_cache_and_containers_reach(store: Store, tmp_path: Path) -> None:
    tagged = _image(store, tmp_path, "tagged")
    child = _image(store, tmp_path, "child", parent=tagged)
    cached = _image(store, tmp_path, "cached")
    running = _image(store, tmp_path, "running")
    garbage = _image(store, tmp_path, "garbage")
    store.tag(child, "app:1")
    store.cache.put("cd" * 32, cached.digest)
    (store.layout.containers / "c1").mkdir()
    (store.layout.containers / "c1" / "state.json").write_text(json.dumps({"image_digest": running.digest}))
    (store.tmp / "leftover").write_text("x")
    young = collect(store, grace_seconds=3600)
    assert young.blobs == 0 and young.tmp_entries == 0  # the grace period protects everything new
    freed = collect(store, grace_seconds=0)
    assert freed.blobs == 3 and freed.commits == 1 and freed.unpacked == 1 and freed.tmp_entries == 1
    assert not store.blobs.has(garbage.digest) and not store.blobs.has(garbage.layers[0].digest)
    for kept in (tagged, child, cached, running):
        assert store.blobs.has(kept.digest) and store.blobs.has(kept.layers[-1].digest)
        assert store.images.commit(kept.digest) is not None
    assert check(store) == []
    pruned = collect(store, grace_seconds=0, prune_cache=True)
    assert pruned.cache_entries == 1 and not store.blobs.has(cached.digest)
    assert check(store, full=True) == []


def test_fsck_reports_missing_parent_and_dangling_tag(store: Store, tmp_path: Path) -> None:
    base = _image(store, tmp_path, "a")
    top = _image(store, tmp_path, "b", parent=base)
    store.tag(top, "app:1")
    store.layout.commit(base.digest).unlink()
    store.blobs.path(base.digest).unlink()
    messages = [p.message for p in check(store) if p.severity == "error"]
    assert any(f"parent {base.digest} is missing" in m for m in messages), messages
    store.blobs.path(top.digest).unlink()
    messages = [p.message for p in check(store) if p.severity == "error"]
    assert any("refs/tags/docker.io/library/app/:1" in m and "missing" in m for m in messages), messages


def test_commit_of_identical_upper_stores_layer_once(store: Store, tmp_path: Path) -> None:
    a = make_tree(tmp_path / "u1", {"f": "same"})
    a.chmod(0o700)  # as store.mkdtemp makes them
    b = make_tree(tmp_path / "u2", {"f": "same"})
    for p in (a / "f", b / "f", a, b):
        os.utime(p, (1000, 1000))
    la = store.layers.commit_upper(a)
    lb = store.layers.commit_upper(b)
    assert la == lb and not a.exists() and not b.exists()
    assert store.layers.unpacked_path(la.diff_id).stat().st_mode & 0o777 == 0o755
    assert len(list(store.blobs.all())) == 1 and len(os.listdir(store.layout.unpacked)) == 1
    assert os.listdir(store.tmp) == []
