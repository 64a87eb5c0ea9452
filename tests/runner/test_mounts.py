"""Overlay mounts for the builder (overlay_rootfs) and the init layer's view of a layer stack."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner import initlayer
from runner.mounts import MAX_OPTIONS, mount_points_under, overlay_options, overlay_rootfs

pytestmark = pytest.mark.usefixtures("no_leaks")


def test_overlay_options_are_the_designs() -> None:
    assert overlay_options(["/a", "/b"], "/u", "/w") == "lowerdir=/a:/b,upperdir=/u,workdir=/w,index=off,redirect_dir=off,metacopy=off"


@pytest.mark.root
def test_overlay_rootfs_writes_land_in_the_upper_and_it_always_unmounts(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/keep").write_text("k")
    (lower / "etc/gone").write_text("g")
    upper = tmp_path / "upper"
    upper.mkdir()
    with overlay_rootfs([lower], upper) as merged:
        assert (merged / "etc/keep").read_text() == "k"
        (merged / "new").write_text("n")
        (merged / "etc/gone").unlink()
        assert mount_points_under(tmp_path) == [str(merged)]
    assert (upper / "new").read_text() == "n"
    gone = os.lstat(upper / "etc/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0  # a whiteout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lower", "upper"]
    with pytest.raises(ZeroDivisionError):
        with overlay_rootfs([lower], upper):
            1 / 0
    assert mount_points_under(tmp_path) == []


@pytest.mark.root
def test_many_long_lower_dirs_still_mount(tmp_path: Path) -> None:
    lowers = []
    for i in range(120):
        d = tmp_path / ("layer-with-a-rather-long-name-like-a-digest-" + format(i, "040x"))
        d.mkdir()
        (d / f"f{i}").write_text(str(i))
        lowers.append(d)
    assert len(overlay_options([str(p) for p in lowers], "u", "w")) > MAX_OPTIONS
    upper = tmp_path / "upper"
    upper.mkdir()
    with overlay_rootfs(list(reversed(lowers)), upper) as merged:
        assert len(os.listdir(merged)) == 120 and (merged / "f7").read_text() == "7"


@pytest.mark.root
def test_union_lookup_honours_whiteouts_opaque_dirs_and_symlinks(tmp_path: Path) -> None:
    top, bottom = tmp_path / "top", tmp_path / "bottom"
    for d in ("etc", "opaque", "data"):
        (bottom / d).mkdir(parents=True)
    (bottom / "etc/hosts").write_text("x")
    (bottom / "opaque/old").write_text("x")
    (bottom / "data/f").write_text("x")
    (top / "opaque").mkdir(parents=True)
    os.setxattr(top / "opaque", "trusted.overlay.opaque", b"y")
    os.mknod(top / "data", stat.S_IFCHR, os.makedev(0, 0))  # whiteout of /data
    os.symlink("/etc", top / "link")
    layers = [top, bottom]
    assert initlayer.union_lstat(layers, ["etc", "hosts"]) is not None
    assert initlayer.union_lstat(layers, ["opaque", "old"]) is None
    assert initlayer.union_lstat(layers, ["data", "f"]) is None
    assert initlayer.union_lstat(layers, ["data"]) is None
    parts, found = initlayer.union_resolve(layers, "/link/hosts")
    assert parts == ["etc", "hosts"] and found is not None


@pytest.mark.root
def test_init_layer_creates_only_missing_placeholders_with_the_images_metadata(tmp_path: Path) -> None:
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    (image / "etc/hosts").write_text("image's")
    os.chmod(image / "etc", 0o750)
    os.utime(image / "etc", (1_000_000, 1_000_000))
    os.symlink("etc", image / "conf")
    init = tmp_path / "init"
    init.mkdir()
    needed = [initlayer.Placeholder(p, d) for p, d in [("/etc/hosts", False), ("/etc/resolv.conf", False), ("/proc", True), ("/conf/extra", True)]]
    where = initlayer.build(init, [image], needed)
    assert where["/conf/extra"] == "/etc/extra"
    assert sorted(str(p.relative_to(init)) for p in init.rglob("*")) == ["etc", "etc/extra", "etc/resolv.conf", "proc"]
    st = os.stat(init / "etc")
    assert stat.S_IMODE(st.st_mode) == 0o750 and st.st_mtime == 1_000_000
