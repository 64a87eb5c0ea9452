"""The store root is an OCI image layout that real tools read: skopeo (any compression) and umoci
(gzip layers: umoci 0.4.7 cannot read zstd)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Pybuild, need_tool
from tests.layerstore.helpers import make_tree

pytestmark = pytest.mark.compat


def test_skopeo_inspects_tags_in_the_store(tmp_path: Path, pb: Pybuild, store_root: Path) -> None:
    skopeo = need_tool("skopeo")
    image_id = pb("import", make_tree(tmp_path / "r", {"etc/hello": "hi"}), "app:1").stdout.strip()
    pb("tag", "app:1", "localhost:5000/team/app:2")
    for name in ("app:1", "localhost:5000/team/app:2"):
        out = subprocess.run([skopeo, "inspect", f"oci:{store_root}:{name}"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["Digest"] == json.loads(pb("inspect", name).stdout)[0]["Digest"]
        assert doc["Layers"][0] == json.loads(pb("inspect", name).stdout)[0]["Layers"][0]["Digest"]
    config = subprocess.run([skopeo, "inspect", "--config", f"oci:{store_root}:app:1"], capture_output=True, text=True, check=True)
    assert json.loads(config.stdout)["rootfs"]["diff_ids"] == json.loads(pb("inspect", image_id).stdout)[0]["RootFS"]["Layers"]


def test_skopeo_copies_out_and_verifies_every_blob(tmp_path: Path, pb: Pybuild, store_root: Path) -> None:
    skopeo = need_tool("skopeo")
    pb("import", make_tree(tmp_path / "r", {"f": "x" * 10000}), "app:1")
    out = subprocess.run([skopeo, "copy", f"oci:{store_root}:app:1", f"dir:{tmp_path / 'copy'}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "copy" / "manifest.json").exists()


def test_umoci_unpacks_gzip_images(tmp_path: Path, pb: Pybuild, store_root: Path) -> None:
    umoci = need_tool("umoci")
    base = make_tree(tmp_path / "base", {"etc/hello": "hi", "bin/tool": "t"})
    pb("import", "--compression", "gzip", base, "base:1")
    from layerstore.oci import HistoryEntry
    from layerstore.store import Store

    with Store.open(store_root) as store:
        parent = store.resolve("base:1")
        upper = make_tree(tmp_path / "upper", {"etc/added": "a"})
        child = store.commit(upper, parent=parent, created_by="RUN add", compression="gzip")
        child = store.write_image(parent=child, history=[HistoryEntry("LABEL x=y", empty_layer=True)], instruction="LABEL x=y")
        store.tag(child, "app:1")
    bundle = tmp_path / "bundle"
    out = subprocess.run([umoci, "unpack", "--image", f"{store_root}:app:1", str(bundle)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (bundle / "rootfs/etc/hello").read_text() == "hi" and (bundle / "rootfs/etc/added").read_text() == "a"
    assert pb("fsck").stdout.strip() == "ok"
