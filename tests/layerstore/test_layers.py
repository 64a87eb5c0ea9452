"""Directory <-> layer: deterministic commit, overlay whiteouts both ways, round trips."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import xattr

from layerstore.layer_tar import WhiteoutNameError
from layerstore.layers import Layer, remove_tree
from layerstore.store import Store
from tests.layerstore.helpers import make_tree, make_varied_tree, snapshot


def _list(store: Store, layer: Layer) -> list[str]:
    out = subprocess.run(
        f"zstd -dc {store.blobs.path(layer.digest)} | tar -tvf - --numeric-owner --full-time",
        shell=True, capture_output=True, text=True, check=True,
    ).stdout
    return out.splitlines()


def _names(store: Store, layer: Layer) -> list[str]:
    return subprocess.run(
        f"zstd -dc {store.blobs.path(layer.digest)} | tar -tf -", shell=True, capture_output=True, text=True, check=True
    ).stdout.split()


def test_same_tree_gives_same_layer_and_is_stored_once(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", {"b/2": "two", "b/1": "one", "a": "x"})
    b = make_tree(tmp_path / "b", {"a": "x", "b/1": "one", "b/2": "two"})
    for p in (a, b):
        for dirpath, dirs, files in os.walk(p):
            for n in dirs + files:
                os.utime(os.path.join(dirpath, n), (1000, 1000))
    with Store.open(tmp_path / "s") as store:
        la = store.layers.commit_dir(a)
        lb = store.layers.commit_dir(b)
        assert la == lb
        assert len(list(store.blobs.all())) == 1
        assert _names(store, la) == ["a", "b/", "b/1", "b/2"]


def test_source_date_epoch_clamps_mtimes(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", {"new": "n", "old": "o"})
    os.utime(tree / "old", (100, 100))
    with Store.open(tmp_path / "s") as store:
        first = store.layers.commit_dir(tree, source_date_epoch=500)
        os.utime(tree / "new", None)  # touch: still later than the epoch
        assert store.layers.commit_dir(tree, source_date_epoch=500).diff_id == first.diff_id
        listing = _list(store, first)
    assert any("1970-01-01 00:08:20" in line and line.endswith("new") for line in listing), listing
    assert any("1970-01-01 00:01:40" in line and line.endswith("old") for line in listing), listing


def test_real_wh_file_is_refused_and_tree_kept(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", {"d/.wh.precious": "data"})
    with Store.open(tmp_path / "s") as store:
        with pytest.raises(WhiteoutNameError, match=r"d/\.wh\.precious.*cannot be stored"):
            store.layers.commit_upper(tree)
        assert (tree / "d/.wh.precious").read_text() == "data"
        assert list(store.blobs.all()) == []


@pytest.mark.root
def test_overlay_upper_whiteouts_and_opaque_dirs_become_wh_entries_and_back(tmp_path: Path) -> None:
    upper = make_tree(tmp_path / "upper", {"keep": "k", "opq/new": "n"})
    (upper / "gone-dir").mkdir()
    os.rmdir(upper / "gone-dir")
    os.mknod(upper / "gone", stat.S_IFCHR, 0)
    xattr.set(str(upper / "opq"), "trusted.overlay.opaque", b"y")
    xattr.set(str(upper / "keep"), "trusted.overlay.origin", b"junk")
    xattr.set(str(upper / "keep"), "user.note", b"kept")
    with Store.open(tmp_path / "s") as store:
        layer = store.layers.commit_upper(upper)
        names = _names(store, layer)
        assert names == [".wh.gone", "keep", "opq/", "opq/.wh..wh..opq", "opq/new"]
        assert not upper.exists()  # consumed: renamed into unpacked/
        unpacked = store.layers.unpacked_path(layer.diff_id)
        assert (unpacked / "keep").read_text() == "k"
        # unpack the blob itself elsewhere and compare with the adopted upper
        os.rename(unpacked, tmp_path / "adopted")
        again = store.layers.unpack(layer)
    st = os.lstat(again / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert xattr.get(str(again / "opq"), "trusted.overlay.opaque") == b"y"
    assert xattr.get(str(again / "keep"), "user.note") == b"kept"
    assert b"trusted.overlay.origin" not in xattr.list(str(again / "keep"))


@pytest.mark.root
def test_metadata_round_trips(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"bin/tool": "#!/bin/sh\n", "data/f": "x" * 5000})
    os.chmod(src / "bin/tool", 0o4755)
    os.chown(src / "data/f", 1234, 5678)
    os.link(src / "data/f", src / "data/hard")
    os.symlink("/etc/passwd", src / "abs-link")
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(src / "fifo", 0o640)
    xattr.set(str(src / "bin/tool"), "security.capability", b"\x01\x00\x00\x02\x00\x04\x00\x00" + b"\x00" * 12)
    os.chmod(src / "data", 0o750)
    for dirpath, dirs, files in os.walk(src):
        for n in dirs + files:
            os.utime(os.path.join(dirpath, n), (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    with Store.open(tmp_path / "s") as store:
        layer = store.layers.commit_dir(src)
        out = store.layers.unpack(layer)
        assert snapshot(out) == snapshot(src)
        assert os.stat(out / "data/f").st_ino == os.stat(out / "data/hard").st_ino
        assert os.stat(out / "data/f").st_uid == 1234
        assert os.stat(out / "null").st_rdev == os.makedev(1, 3)
        assert xattr.get(str(out / "bin/tool"), "security.capability")[:4] == b"\x01\x00\x00\x02"
        # and committing the unpacked copy gives the same layer: the round trip is exact
        assert store.layers.commit_dir(out).diff_id == layer.diff_id


def test_gzip_layers_and_recompression_keep_the_diff_id(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", {"f": "data" * 1000})
    with Store.open(tmp_path / "s") as store:
        z = store.layers.commit_dir(tree)
        g = store.layers.commit_dir(tree, compression="gzip")
        assert g.diff_id == z.diff_id and g.digest != z.digest
        assert g.media_type.endswith("+gzip") and z.media_type.endswith("+zstd")
        assert store.layers.recompress(z, "gzip") == g
        assert store.layers.known(z.diff_id, "gzip") == g
        subprocess.run(["gzip", "-t", str(store.blobs.path(g.digest))], check=True)


def test_deep_tree_commits_without_recursion_limit(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.mkdir()
    fd = os.open(path, os.O_RDONLY)
    for _ in range(1200):  # deeper than Python's recursion limit, within PATH_MAX
        os.mkdir("d", dir_fd=fd)
        fd, old = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(old)
    os.close(os.open("leaf", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
    deep = path.joinpath(*["d"] * 1200)
    with Store.open(tmp_path / "s") as store:
        try:
            layer = store.layers.commit_dir(path)
            out = store.layers.unpack(layer)
            assert (out / os.path.relpath(deep / "leaf", path)).exists()
        finally:  # shutil.rmtree (pytest's cleanup) recurses too deep for this tree
            remove_tree(path, store.tmp)
            remove_tree(store.layout.unpacked, store.tmp)
    assert not path.exists()


# The layers the code before the commit speed-up (at 6b389c4) made of `make_varied_tree`:
# (source_date_epoch, compression) -> (diff_id, blob digest). The tar, and the compressed bytes,
# must stay exactly these: stored images keep their digests across pybuild versions.
_VARIED_LAYERS = {
    (None, "zstd"): ("28ad27a33eb9fabb450c177010a29babf428f782bd9c85ebf46a031c0ff4240f",
                     "3730f0d102076dd3275016894a90bd3b0ae7312ff9de8b1d36cd412da1c9a16a"),
    (None, "gzip"): ("28ad27a33eb9fabb450c177010a29babf428f782bd9c85ebf46a031c0ff4240f",
                     "58bbc3fb10943ad1c920d2ab300e862fc949974ee65bdef16af07c9d000257af"),
    (1_700_000_100, "zstd"): ("5b8678f73c6404fce508b8e663afec8ea155defe65910bb485558f8e74795c6d",
                              "14b156370872b49a85f78edd066e2a80dd76ba3e205532e060bb4cefb0895784"),
    (1_700_000_100, "gzip"): ("5b8678f73c6404fce508b8e663afec8ea155defe65910bb485558f8e74795c6d",
                              "20b856716daf7edfe09e9df373bcd5cbe837abfc4ac11ffbc7d2a133b20626b3"),
}


@pytest.mark.root
def test_varied_tree_gives_the_same_bytes_as_before(tmp_path: Path) -> None:
    tree = make_varied_tree(tmp_path / "tree")
    with Store.open(tmp_path / "s") as store:
        for (epoch, compression), (diff_hex, digest_hex) in _VARIED_LAYERS.items():
            layer = store.layers.commit_dir(tree, source_date_epoch=epoch, compression=compression)
            assert (layer.diff_id, layer.digest) == ("sha256:" + diff_hex, "sha256:" + digest_hex), (epoch, compression)
        # and back: the unpacked layer commits to the same bytes again
        layer = store.layers.known("sha256:" + _VARIED_LAYERS[(None, "zstd")][0], "zstd")
        assert layer is not None
        assert store.layers.commit_dir(store.layers.unpack(layer)).diff_id == layer.diff_id
