"""Archives that lie: each is refused with one error line, writes nothing outside the store,
publishes nothing in it (no blob, no tag) and leaves no staging behind."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from layerstore import transfer_verify
from layerstore.store import Store
from layerstore.transfer import load

from .archives import Entry, Layout, layer_tar, sha, simple_layer


def pybuild_load(root: Path, source: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybuild", "--root", str(root), "load", "-i", str(source)],
                          capture_output=True, text=True, timeout=120)


def assert_refused(root: Path, proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 1, proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert_nothing_published(root)
    return errors[0]


def assert_nothing_published(root: Path) -> None:
    with Store.open(root) as store:
        assert list(store.tags.all()) == []
        assert list(store.blobs.all()) == []
        assert not any(store.tmp.iterdir())
        assert not any(store.layers.layout.unpacked.iterdir())


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Where a traversal would land: must stay empty."""
    d = tmp_path / "outside"
    d.mkdir()
    return d


TRAVERSALS = {
    "dotdot": [Entry("../../../../../../outside-evil", b"x")],
    "absolute": [Entry("/tmp/pybuild-absolute-evil", b"x")],
    "through-symlink": [Entry("link", type=tarfile.SYMTYPE, linkname="/tmp"), Entry("link/pybuild-symlink-evil", b"x")],
    "hardlink-out": [Entry("hl", type=tarfile.LNKTYPE, linkname="../../../etc/passwd")],
}


@pytest.mark.root
@pytest.mark.parametrize("case", sorted(TRAVERSALS))
def test_path_traversal_in_a_layer_is_refused(case: str, tmp_path: Path, outside: Path) -> None:
    layout = Layout()
    layout.add_image([simple_layer(), layer_tar(TRAVERSALS[case])])
    archive = layout.write_tar(tmp_path / "evil.tar")
    root = tmp_path / "store"
    error = assert_refused(root, pybuild_load(root, archive), str(archive), "layer")
    assert "outside-evil" in error or "evil" in error or "hl" in error or "link" in error
    assert not any(outside.iterdir())
    assert not Path("/tmp/pybuild-absolute-evil").exists() and not Path("/tmp/pybuild-symlink-evil").exists()


def test_a_blob_whose_content_is_not_its_name_is_refused(tmp_path: Path) -> None:
    layout = Layout()
    desc = layout.add_image([simple_layer()])
    manifest = layout.blobs[str(desc["digest"])]
    layout.blobs[str(desc["digest"])] = manifest.replace(b'"schemaVersion": 2', b'"schemaVersion":  2')
    root = tmp_path / "store"
    assert_refused(root, pybuild_load(root, layout.write_tar(tmp_path / "a.tar")), "digest mismatch",
                   str(desc["digest"]).split(":")[1])


def test_a_manifest_descriptor_with_the_wrong_size_is_refused(tmp_path: Path) -> None:
    layout = Layout()
    desc = layout.add_image([simple_layer()])
    desc["size"] = int(str(desc["size"])) - 1
    root = tmp_path / "store"
    assert_refused(root, pybuild_load(root, layout.write_dir(tmp_path / "dir")), "size mismatch")


def test_a_config_naming_a_missing_layer_is_refused(tmp_path: Path) -> None:
    layout = Layout()
    layout.add_image([simple_layer()], store_layers=False)
    root = tmp_path / "store"
    assert_refused(root, pybuild_load(root, layout.write_tar(tmp_path / "a.tar")), "missing 1 layer(s)")


def test_a_manifest_naming_a_missing_config_is_refused(tmp_path: Path) -> None:
    layout = Layout()
    desc = layout.add_image([simple_layer()])
    import json
    config = json.loads(layout.blobs[str(desc["digest"])])["config"]["digest"]
    del layout.blobs[config]
    root = tmp_path / "store"
    assert_refused(root, pybuild_load(root, layout.write_tar(tmp_path / "a.tar")), "config", "missing")


@pytest.mark.root
def test_a_diff_id_that_does_not_match_its_layer_is_refused(tmp_path: Path) -> None:
    layout = Layout()
    layout.add_image([simple_layer()], diff_ids=[sha(b"something else")])
    root = tmp_path / "store"
    assert_refused(root, pybuild_load(root, layout.write_tar(tmp_path / "a.tar")), "diff_id", "digest mismatch")


@pytest.mark.root
def test_a_layer_with_the_wrong_media_type_is_refused(tmp_path: Path) -> None:
    layout = Layout()
    layout.add_image([simple_layer()], compression="zstd")
    layout.rewrite_manifest(lambda data: data.replace(b"tar+zstd", b"tar+gzip"))
    root = tmp_path / "store"
    assert_refused(root, pybuild_load(root, layout.write_tar(tmp_path / "a.tar")), "media type says gzip")


@pytest.mark.root
@pytest.mark.parametrize("member", [0, -1])
def test_a_truncated_archive_is_refused(tmp_path: Path, member: int) -> None:
    layout = Layout()
    layout.add_image([layer_tar([Entry("big", bytes(range(256)) * 4000)])])
    full = layout.write_tar(tmp_path / "full.tar")
    with tarfile.open(full) as tar:
        files = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.size)
        victim = files[member]  # cut in the middle of the biggest (the layer) or the smallest member
    archive = layout.write_tar(tmp_path / "cut.tar", truncate_at=victim.offset_data + victim.size // 2)
    root = tmp_path / "store"
    assert_refused(root, pybuild_load(root, archive), "cut.tar")


@pytest.mark.root
def test_a_blob_larger_than_its_descriptor_is_refused(tmp_path: Path) -> None:
    import json

    def smaller_layer(data: bytes) -> bytes:
        manifest = json.loads(data)
        manifest["layers"][0]["size"] -= 10
        return json.dumps(manifest).encode()

    layout = Layout()
    layout.add_image([simple_layer()])
    layout.rewrite_manifest(smaller_layer)
    root = tmp_path / "store"
    assert_refused(root, pybuild_load(root, layout.write_tar(tmp_path / "a.tar")), "size mismatch")


def test_not_an_archive_is_one_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive at all\n" * 100)
    root = tmp_path / "store"
    assert_refused(root, pybuild_load(root, junk), "junk.tar")


@pytest.mark.root
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_decompression_bomb_layer_is_refused(tmp_path: Path, compression: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A layer of 64 MiB of zeros compresses to a few kB; with the floor lowered to 4 MiB (the ratio
    # still applies) it is a bomb, as a 4 TiB one would be with the real floor.
    monkeypatch.setattr(transfer_verify, "EXPANSION_FLOOR", 4 << 20)
    monkeypatch.setattr(transfer_verify, "EXPANSION_RATIO", 16)
    bomb = layer_tar([Entry("zeros", b"\0" * (64 << 20))])
    layout = Layout()
    layout.add_image([bomb], compression=compression)
    archive = layout.write_tar(tmp_path / "bomb.tar")
    assert archive.stat().st_size < 1 << 20
    root = tmp_path / "store"
    with Store.open(root) as store, pytest.raises(transfer_verify.ExpansionLimit) as e:
        load(store, str(archive))
    assert "expands past 4194304 bytes" in e.value.message and "\n" not in str(e.value)
    assert_nothing_published(root)


@pytest.mark.root
def test_a_compressed_archive_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer_verify, "EXPANSION_FLOOR", 1 << 20)
    archive = tmp_path / "bomb.tar.zst"
    archive.write_bytes(zstandard.ZstdCompressor().compress(layer_tar([Entry("zeros", b"\0" * (32 << 20))])))
    root = tmp_path / "store"
    with Store.open(root) as store, pytest.raises(transfer_verify.ExpansionLimit):
        load(store, str(archive))
    assert_nothing_published(root)


def test_an_honest_hand_made_layout_loads(tmp_path: Path) -> None:
    """The control for the cases above: the same maker, no lie, loads."""
    if __import__("os").geteuid() != 0:
        pytest.skip("extraction of layers needs root here")
    layout = Layout()
    layout.add_image([simple_layer()], name="honest:1")
    root = tmp_path / "store"
    proc = pybuild_load(root, layout.write_tar(tmp_path / "ok.tar"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Loaded image: honest:1\n"
