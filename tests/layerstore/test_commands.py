"""The store commands through the real CLI: bootstrap, import, images, tag, rmi, inspect, history,
log, diff, gc, fsck."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Pybuild, make_pb
from tests.layerstore.helpers import make_tree


@pytest.mark.root
def test_bootstrap_busybox_is_deterministic_and_runs_applets(tmp_path: Path, busybox_store: Path) -> None:
    other = make_pb(tmp_path / "other")
    other("bootstrap", "busybox")
    mine = make_pb(busybox_store)
    doc = json.loads(mine("inspect", "busybox:latest").stdout)[0]
    again = json.loads(other("inspect", "busybox").stdout)[0]
    assert (doc["Id"], doc["Digest"], doc["Layers"]) == (again["Id"], again["Digest"], again["Layers"])
    assert doc["Config"]["Cmd"] == ["sh"] and doc["RepoTags"] == ["busybox:latest"]
    layer = doc["RootFS"]["Layers"][0]
    unpacked = busybox_store / "unpacked" / layer.removeprefix("sha256:")
    assert (unpacked / "bin/sh").stat().st_ino == (unpacked / "bin/busybox").stat().st_ino
    out = subprocess.run([str(unpacked / "bin/echo"), "hi"], capture_output=True, text=True)
    assert out.stdout == "hi\n"
    assert (unpacked / "tmp").stat().st_mode & 0o7777 == 0o1777


def test_import_directory_tarball_and_stdin(tmp_path: Path, pb: Pybuild) -> None:
    tree = make_tree(tmp_path / "rootfs", {"etc/os-release": "ID=test\n", "bin/x": "x"})
    image_id = pb("import", tree, "fromdir:1", "-m", "first").stdout.strip()
    assert image_id.startswith("sha256:")
    archive = tmp_path / "rootfs.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(tree), "."], check=True)
    pb("import", archive, "fromtar:1")
    data = gzip.decompress(archive.read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "pybuild", "--root", str(tmp_path / "store"), "import", "-", "fromstdin:1"],
        input=data, capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    listing = pb("images").stdout.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    repos = sorted(line.split()[0] for line in listing[1:])
    assert repos == ["fromdir", "fromstdin", "fromtar"]
    history = pb("history", "fromtar:1").stdout
    assert "Imported from" in history
    assert pb("fsck", "--full").stdout.strip() == "ok"


def test_tag_rmi_log_and_reflog(tmp_path: Path, pb: Pybuild) -> None:
    tree = make_tree(tmp_path / "rootfs", {"f": "1"})
    image_id = pb("import", tree, "app:1").stdout.strip()
    pb("tag", "app:1", "app:2")
    pb("tag", image_id[7:19], "other/app:latest")
    assert sorted(pb("images", "-q").stdout.split()) == [image_id[7:19]]
    assert len(pb("images").stdout.splitlines()) == 4
    proc = pb("rmi", image_id[7:19], check=False)
    assert proc.returncode == 1 and "multiple repositories" in proc.stderr
    assert pb("rmi", "app:2").stdout.strip() == "Untagged: app:2"
    out = pb("rmi", "-f", image_id).stdout
    assert "Untagged: app:1" in out and "Untagged: other/app:latest" in out and f"Deleted: {image_id}" in out
    assert pb("images").stdout.strip().splitlines()[1:] == []
    proc = pb("rmi", "nothing:here", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: image nothing:here not found")
    freed = pb("gc", "--grace", "0").stdout
    assert freed.startswith("Freed ") and "3 blobs" in freed
    assert pb("fsck").stdout.strip() == "ok"


def test_inspect_history_log_and_diff_of_a_chain(tmp_path: Path, pb: Pybuild, store_root: Path) -> None:
    from layerstore.oci import HistoryEntry
    from layerstore.store import Store

    base = make_tree(tmp_path / "base", {"keep": "k", "change": "old", "gone": "g", "dir/x": "x"})
    pb("import", base, "base:1")
    upper = make_tree(tmp_path / "upper", {"change": "new", "added": "a"})
    with Store.open(store_root) as store:
        parent = store.resolve("base:1")
        if os.geteuid() == 0:
            os.mknod(upper / "gone", stat.S_IFCHR, 0)
        child = store.commit(upper, parent=parent, created_by="RUN change things", message="a test step", consume=True)
        meta = store.write_image(parent=child, history=[HistoryEntry("LABEL a=b", empty_layer=True)], instruction="LABEL a=b")
        store.tag(meta, "app:1")
    doc = json.loads(pb("inspect", "app:1").stdout)
    assert len(doc) == 1 and doc[0]["Parent"] == child.digest and len(doc[0]["RootFS"]["Layers"]) == 2
    history = pb("history", "app:1").stdout.splitlines()
    assert "LABEL a=b" in history[1] and "RUN change things" in history[2] and "Imported from" in history[3]
    assert history[1].split()[0] == meta.id[7:19] and history[2].split()[0] == child.id[7:19]
    log = pb("log", "app:1").stdout
    assert log.index(meta.digest) < log.index(child.digest) < log.index(parent.digest)
    assert "a test step" in log and "(app:1)" in log
    diff = pb("diff", "app:1").stdout.splitlines()
    assert diff == []  # app:1 is metadata only: no file changes against its parent
    diff = pb("diff", "base:1", "app:1").stdout.splitlines()
    expected = {"A /added", "C /change"} | ({"D /gone"} if os.geteuid() == 0 else set())
    assert expected <= set(diff) and not any(line.endswith("/keep") for line in diff), diff
    proc = pb("inspect", "nope:1", check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout) == [] and "no such object: nope:1" in proc.stderr


def test_fsck_fails_on_damage_with_error_lines(tmp_path: Path, pb: Pybuild, store_root: Path) -> None:
    pb("import", make_tree(tmp_path / "r", {"f": "x" * 1000}), "app:1")
    doc = json.loads(pb("inspect", "app:1").stdout)[0]
    blob = store_root / "blobs/sha256" / doc["Layers"][0]["Digest"][7:]
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-5] ^= 1
    blob.write_bytes(bytes(data))
    proc = pb("fsck", check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].startswith("error: blob sha256:") and "digest mismatch" in proc.stderr
