"""Hostile layer tars: each is refused with one error line, nothing is written outside the target,
and the store is left as it was (DESIGN.md section 3)."""

from __future__ import annotations

import os
import re
import stat
import tarfile
from pathlib import Path

import pytest

from layerstore.extract import UnsafeLayer, extract
from layerstore.layers import Layer
from layerstore.store import Store
from layerstore.tar_format import TarReader
from tests.conftest import Pybuild
from tests.layerstore.helpers import member, snapshot, tar_bytes

SYM, LNK, DIR, CHR, BLK = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE


def hostile_cases(outside: Path) -> dict[str, tuple[list, str]]:
    """name -> (members, a fragment of the expected error)."""
    deep = "/".join(["p" * 50] * 20)
    return {
        "dotdot": ([member("../escaped", data=b"x")], "'..' in path"),
        "dotdot-inner": ([member("a/../../escaped", data=b"x")], "'..' in path"),
        "absolute": ([member(str(outside / "abs"), data=b"x")], "absolute path"),
        "through-symlink": ([member("link", SYM, link=str(outside)), member("link/escaped", data=b"x")], "not a directory (a symlink?)"),
        "symlink-chain": (
            [member("a", SYM, link="b"), member("b", SYM, link="../../.." + str(outside)), member("a/escaped", data=b"x")],
            "not a directory (a symlink?)",
        ),
        "dir-then-symlink-swap": (
            [member("d", DIR, mode=0o755), member("d", SYM, link=str(outside)), member("d/escaped", data=b"x")],
            "replaces a directory",
        ),
        "hardlink-outside": ([member("h", LNK, link="../../../../../../etc/passwd")], "'..' in path"),
        "hardlink-absolute": ([member("h", LNK, link="/etc/passwd")], "absolute path"),
        "hardlink-through-symlink": ([member("etc", SYM, link="/etc"), member("h", LNK, link="etc/passwd")], "not a directory (a symlink?)"),
        "hardlink-missing": ([member("h", LNK, link="nothing-here")], "not in the layer"),
        "whiteout-dotdot": ([member("a/.wh..", data=b"")], "not a plain name"),
        "whiteout-empty": ([member("a/.wh.", data=b"")], "not a plain name"),
        "whiteout-as-dir": ([member("a/.wh..x/y", data=b"")], "whiteout name cannot be a directory"),
        "device-through-symlink": ([member("dev", SYM, link=str(outside)), member("dev/sda", BLK, major=8, minor=0)], "not a directory (a symlink?)"),
        "device-dotdot": ([member("../null", CHR, major=1, minor=3)], "'..' in path"),
        "realpath-length": (  # the CVE-2025-4517 shape: long names, then a link climbing out
            [member(deep, DIR, mode=0o755), member(deep + "/up", SYM, link="../" * 25 + str(outside).lstrip("/")),
             member(deep + "/up/escaped", data=b"x")],
            "not a directory (a symlink?)",
        ),
    }


CASES = sorted(hostile_cases(Path("/x")))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "canary").write_text("untouched")
    return d


@pytest.mark.parametrize("case", CASES)
def test_hostile_import_is_refused_with_one_line_and_store_unchanged(case: str, tmp_path: Path, outside: Path, pb: Pybuild, store_root: Path) -> None:
    members, fragment = hostile_cases(outside)[case]
    archive = tmp_path / "hostile.tar"
    archive.write_bytes(tar_bytes(members))
    pb("images")  # creates the store
    before = snapshot(store_root, dir_times=False)
    outside_before = snapshot(outside)
    proc = pb("import", archive, "x:1", check=False)
    assert proc.returncode == 1, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line]
    assert len([line for line in lines if line.startswith("error:")]) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in lines[0], proc.stderr
    assert snapshot(store_root, dir_times=False) == before
    assert snapshot(outside) == outside_before
    assert not (tmp_path / "escaped").exists() and not Path("/escaped").exists()


@pytest.mark.parametrize("case", ["through-symlink", "hardlink-outside", "whiteout-dotdot", "device-through-symlink"])
def test_hostile_layer_blob_is_refused_on_unpack(case: str, tmp_path: Path, outside: Path) -> None:
    members, fragment = hostile_cases(outside)[case]
    data = tar_bytes(members)
    with Store.open(tmp_path / "s") as store:
        blob = store.blobs.put(data)
        layer = Layer(blob.digest, blob.digest, blob.size, "application/vnd.oci.image.layer.v1.tar")
        with pytest.raises(UnsafeLayer, match=re.escape(fragment)):
            store.layers.unpack(layer)
        assert os.listdir(store.layout.unpacked) == []
        assert os.listdir(store.layout.tmp) == []
    assert snapshot(outside) == {"canary": snapshot(outside)["canary"]}


def test_later_regular_file_replaces_symlink_without_following_it(tmp_path: Path, outside: Path) -> None:
    data = tar_bytes([member("s", SYM, link=str(outside / "canary")), member("s", data=b"inside")])
    target = tmp_path / "t"
    target.mkdir()
    import io

    extract(TarReader(io.BytesIO(data)), target)
    assert (target / "s").read_bytes() == b"inside" and not (target / "s").is_symlink()
    assert (outside / "canary").read_text() == "untouched"


def test_unprivileged_unpack_skips_device_nodes_and_refuses_whiteouts(tmp_path: Path) -> None:
    import io

    target = tmp_path / "t"
    target.mkdir()
    data = tar_bytes([member("dev/null", CHR, major=1, minor=3, mode=0o666), member("fifo", tarfile.FIFOTYPE), member("f", data=b"x")])
    done = extract(TarReader(io.BytesIO(data)), target, privileged=False)
    assert done.skipped_devices == 1
    assert not (target / "dev/null").exists() and stat.S_ISFIFO(os.lstat(target / "fifo").st_mode)
    target2 = tmp_path / "t2"
    target2.mkdir()
    with pytest.raises(UnsafeLayer, match="whiteouts need root"):
        extract(TarReader(io.BytesIO(tar_bytes([member(".wh.gone", data=b"")]))), target2, privileged=False)


@pytest.mark.root
def test_root_unpack_creates_device_nodes_inside_the_target(tmp_path: Path) -> None:
    import io

    target = tmp_path / "t"
    target.mkdir()
    extract(TarReader(io.BytesIO(tar_bytes([member("dev/null", CHR, major=1, minor=3, mode=0o666)]))), target, privileged=True)
    st = os.lstat(target / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3) and stat.S_IMODE(st.st_mode) == 0o666


def test_garbage_is_one_error_line(tmp_path: Path, pb: Pybuild) -> None:
    archive = tmp_path / "junk.tar"
    archive.write_bytes(os.urandom(4096))
    proc = pb("import", archive, "x:1", check=False)
    assert proc.returncode == 1
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [proc.stderr.splitlines()[0]]
    assert "internal error" not in proc.stderr
