"""save and load: OCI layouts (tar and directory) and docker archives, several images sharing blobs,
compression on request only, incremental bundles, and streams through stdin/stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from layerstore.store import Store
from layerstore.transfer import load, save

from tests.conftest import Pybuild

pytestmark = pytest.mark.root


def add_app(root: Path, tag: str = "app:2", text: bytes = b"app\n") -> str:
    """Tag an image with one more layer on top of busybox; return its digest."""
    with Store.open(root) as store:
        work = store.mkdtemp()
        (work / "app.txt").write_bytes(text)
        image = store.commit(work, parent=store.resolve("busybox"), created_by="COPY app.txt /")
        store.tag(image, tag)
        return image.digest


def members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return [m.name for m in tar.getmembers() if m.isfile()]


def tags_of(root: Path) -> dict[str, str]:
    with Store.open(root) as store:
        return {t.ref.familiar: t.digest for t in store.tags.all()}


def test_oci_archive_round_trip_keeps_digests(busybox_store: Path, tmp_path: Path, pb: Pybuild) -> None:
    out = tmp_path / "bb.tar"
    pb("save", "busybox", "-o", out)
    other = tmp_path / "other"
    proc = subprocess.run([sys.executable, "-m", "pybuild", "--root", str(other), "load", "-i", str(out)],
                          capture_output=True, text=True, check=True)
    assert proc.stdout == "Loaded image: busybox:latest\n"
    assert tags_of(other) == tags_of(busybox_store)
    with Store.open(other) as store:
        image = store.resolve("busybox")
        assert store.layers.unpacked_path(image.layers[0].diff_id).joinpath("bin/busybox").exists()
        assert not any(store.tmp.iterdir())
        assert {p.stat().st_mode & 0o777 for p in store.layout.blobs.iterdir()} == {0o444}  # read-only, as stored ones


def test_several_images_share_their_blobs(busybox_store: Path, tmp_path: Path) -> None:
    app = add_app(busybox_store)
    out = tmp_path / "both.tar"
    with Store.open(busybox_store) as store:
        save(store, ["busybox", "app:2"], str(out))
        base_layer = store.resolve("busybox").layers[0].digest
    names = members(out)
    assert names.count("blobs/sha256/" + base_layer.split(":")[1]) == 1
    assert len(names) == len(set(names))
    index = json.loads(tarfile.open(out).extractfile("index.json").read())  # type: ignore[union-attr]
    assert {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]} == {"busybox:latest", "app:2"}
    with Store.open(tmp_path / "other") as store:
        loaded = load(store, str(out))
    assert {n for item in loaded for n in item.names} == {"busybox:latest", "app:2"}
    assert tags_of(tmp_path / "other")["app:2"] == app


def test_oci_dir_hardlinks_store_blobs_and_loads(busybox_store: Path, tmp_path: Path, pb: Pybuild) -> None:
    out = tmp_path / "layout"
    pb("save", "--format", "oci-dir", "-o", out, "busybox")
    with Store.open(busybox_store) as store:
        layer = store.resolve("busybox").layers[0]
        stored = store.blobs.path(layer.digest)
    saved = out / "blobs/sha256" / layer.digest.split(":")[1]
    assert saved.stat().st_ino == stored.stat().st_ino
    assert (out / "oci-layout").exists()
    with Store.open(tmp_path / "other") as store:
        assert load(store, str(out))[0].names == ("busybox:latest",)


def test_docker_archive_round_trip_keeps_the_image_id(busybox_store: Path, tmp_path: Path, pb: Pybuild) -> None:
    out = tmp_path / "docker.tar"
    pb("save", "--format", "docker", "-o", out, "busybox")
    manifest = json.loads(tarfile.open(out).extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    layer_file = tarfile.open(out).extractfile(manifest[0]["Layers"][0]).read(2)  # type: ignore[union-attr]
    assert layer_file == b"\x1f\x8b"  # docker archives carry gzip, not zstd
    with Store.open(busybox_store) as store:
        original = store.resolve("busybox")
    with Store.open(tmp_path / "other") as store:
        (item,) = load(store, str(out))
        assert item.image.id == original.id
        assert item.image.config.diff_ids == original.config.diff_ids


def test_docker_format_refuses_zstd(busybox_store: Path, tmp_path: Path, pb: Pybuild) -> None:
    proc = pb("save", "--format", "docker", "--compression", "zstd", "-o", tmp_path / "x.tar", "busybox", check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == "error: docker images cannot carry zstd layers"
    assert not (tmp_path / "x.tar").exists()


def test_gzip_is_made_once_and_kept(busybox_store: Path, tmp_path: Path) -> None:
    with Store.open(busybox_store) as store:
        image = store.resolve("busybox")
        (first,) = save(store, ["busybox"], str(tmp_path / "a.tar"), compression="gzip")
        gz = first.layers[0]
        assert gz.compression == "gzip" and gz.diff_id == image.layers[0].diff_id
        assert first.manifest_digest != image.digest
        mtime = store.blobs.path(gz.digest).stat().st_mtime_ns
        (second,) = save(store, ["busybox"], str(tmp_path / "b.tar"), compression="gzip")
        assert second.manifest_digest == first.manifest_digest
        assert store.blobs.path(gz.digest).stat().st_mtime_ns == mtime  # not written again
        (same,) = save(store, ["busybox"], str(tmp_path / "c.tar"), compression="zstd")
        assert same.manifest_digest == image.digest  # as stored: nothing recompressed


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_save_to_stdout_and_load_from_stdin(busybox_store: Path, tmp_path: Path, fmt: str) -> None:
    cmd = [sys.executable, "-m", "pybuild", "--root"]
    saver = subprocess.Popen(cmd + [str(busybox_store), "save", "--format", fmt, "busybox"], stdout=subprocess.PIPE)
    loader = subprocess.run(cmd + [str(tmp_path / "other"), "load"], stdin=saver.stdout, capture_output=True,
                            text=True, timeout=120)
    assert saver.stdout is not None
    saver.stdout.close()
    assert saver.wait(60) == 0
    assert loader.returncode == 0, loader.stderr
    assert loader.stdout == "Loaded image: busybox:latest\n"


def test_a_gzip_compressed_archive_loads(busybox_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "bb.tar"
    with Store.open(busybox_store) as store:
        save(store, ["busybox"], str(out), fmt="docker")
    subprocess.run(["gzip", "-k", str(out)], check=True)
    with Store.open(tmp_path / "other") as store:
        assert load(store, str(out) + ".gz")[0].names == ("busybox:latest",)


def test_an_incremental_bundle_holds_only_the_new_layers(busybox_store: Path, tmp_path: Path, pb: Pybuild) -> None:
    app = add_app(busybox_store)
    bundle = tmp_path / "delta.tar"
    pb("save", "app:2", "--since", "busybox", "-o", bundle)
    with Store.open(busybox_store) as store:
        base_layer, app_layer = (layer.digest.split(":")[1] for layer in store.resolve("app:2").layers)
    names = members(bundle)
    assert "blobs/sha256/" + app_layer in names and "blobs/sha256/" + base_layer not in names

    empty = tmp_path / "empty"
    proc = subprocess.run([sys.executable, "-m", "pybuild", "--root", str(empty), "load", "-i", str(bundle)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: missing 1 layer(s) that the store lacks: sha256:{base_layer}"]
    assert tags_of(empty) == {}
    assert not any((empty / "blobs/sha256").iterdir()) and not any((empty / "tmp").iterdir())

    full = tmp_path / "base.tar"
    pb("save", "busybox", "-o", full)
    target = tmp_path / "target"
    for archive in (full, bundle):
        subprocess.run([sys.executable, "-m", "pybuild", "--root", str(target), "load", "-i", str(archive)],
                       check=True, capture_output=True)
    assert tags_of(target)["app:2"] == app


def test_loaded_images_run(busybox_store: Path, tmp_path: Path, pb: Pybuild) -> None:
    add_app(busybox_store, text=b"from the archive\n")
    out = tmp_path / "app.tar"
    pb("save", "app:2", "-o", out)
    other = tmp_path / "other"
    run = [sys.executable, "-m", "pybuild", "--root", str(other)]
    subprocess.run(run + ["load", "-i", str(out)], check=True, capture_output=True)
    proc = subprocess.run(run + ["run", "--rm", "app:2", "cat", "/app.txt"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from the archive\n"


def test_save_of_an_unknown_image_writes_nothing(busybox_store: Path, tmp_path: Path, pb: Pybuild) -> None:
    proc = pb("save", "busybox", "nope:1", "-o", tmp_path / "x.tar", check=False)
    assert proc.returncode == 1 and "nope:1" in proc.stderr
    assert os.listdir(tmp_path) == [p for p in os.listdir(tmp_path) if not p.startswith(".x.tar")]
    assert not (tmp_path / "x.tar").exists()
