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


def test_tag_rmi_log_and_reflog(tmp_path: Path, pb: Pybuild, store_root: Path) -> None:
    tree = make_tree(tmp_path / "rootfs", {"f": "1"})
    image_id = pb("import", tree, "app:1").stdout.strip()
    pb("tag", "app:1", "app:2")
    pb("tag", image_id[7:19], "other/app:latest")
    assert pb("images", "-q").stdout.split() == [image_id[7:19]]  # one line per image, as podman
    assert len(pb("images").stdout.splitlines()) == 4
    proc = pb("rmi", image_id[7:19], check=False)
    assert proc.returncode == 1 and proc.stderr.splitlines()[0] == (
        f"error: conflict: unable to delete {image_id[7:19]} (must be forced) - image is referenced in multiple repositories")
    assert pb("rmi", "app:2").stdout == "Untagged: app:2\n"
    out = pb("rmi", "-f", image_id).stdout.splitlines()
    assert out == ["Untagged: app:1", "Untagged: other/app:latest", f"Deleted: {image_id}"]
    assert pb("images", "-a").stdout.strip().splitlines()[1:] == []
    assert not any((store_root / "blobs/sha256").iterdir())  # deleted at once, as docker rmi does
    assert not any((store_root / "unpacked").iterdir()) and not any((store_root / "commits").iterdir())
    proc = pb("rmi", "nothing:here", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: image nothing:here not found")
    assert pb("gc", "--grace", "0").stdout.startswith("Freed 0B: 0 blobs")
    assert [(e.old is None, e.new is None, e.message) for e in _reflog(store_root, "app:1")] == [
        (True, False, "import " + str(tree)), (False, True, "rmi")]
    assert pb("fsck").stdout.strip() == "ok"


def _reflog(root: Path, name: str) -> list:  # type: ignore[type-arg]
    from layerstore.store import Store

    with Store.open(root) as store:
        return store.tags.log(name)


def _chain(root: Path, tmp_path: Path) -> dict[str, str]:
    """base:1 (imported) <- mid (untagged, only a parent) <- app:1; and a dangling image. Returns
    name -> manifest digest, plus `base-layer` and `app-layer` blob digests."""
    from layerstore.base_images import import_rootfs
    from layerstore.oci import ContainerConfig, HistoryEntry
    from layerstore.store import Store

    with Store.open(root) as store:
        base = import_rootfs(store, make_tree(tmp_path / "b", {"etc/base": "b"}), "base:1", source_name="b")
        mid = store.commit(make_tree(tmp_path / "m", {"mid": "m"}), parent=base, created_by="RUN mid")
        app = store.write_image(parent=mid, history=[HistoryEntry("LABEL a=b", empty_layer=True)],
                                instruction="LABEL a=b", config=ContainerConfig(labels={"team": "x"}))
        store.tag(app, "app:1")
        dangling = store.commit(make_tree(tmp_path / "d", {"d": "d"}), parent=base, created_by="RUN dangling")
        return {"base": base.digest, "mid": mid.digest, "app": app.digest, "dangling": dangling.digest,
                "base-id": base.id, "mid-id": mid.id, "app-id": app.id, "dangling-id": dangling.id,
                "mid-layer": mid.layers[-1].digest, "base-layer": base.layers[0].digest}


def test_images_lists_dangling_images_and_filters_as_docker(tmp_path: Path, pb: Pybuild, store_root: Path) -> None:
    c = _chain(store_root, tmp_path)

    def ids(*args: str) -> list[str]:
        return pb("images", "-q", "--no-trunc", *args).stdout.split()

    assert set(ids()) == {c["base-id"], c["app-id"], c["dangling-id"]}  # mid is an intermediate image
    assert set(ids("-a")) == {c["base-id"], c["app-id"], c["dangling-id"], c["mid-id"]}
    assert ids("-f", "dangling=true") == [c["dangling-id"]]
    assert set(ids("-f", "dangling=false")) == {c["base-id"], c["app-id"]}
    assert ids("-f", "label=team=x") == [c["app-id"]] and ids("-f", "label=team=y") == []
    assert ids("-f", "reference=ap*") == [c["app-id"]] and ids("ba*") == [c["base-id"]]
    assert ids("app") == [c["app-id"]] and ids("app:2") == [] and ids("docker.io/library/base:1") == [c["base-id"]]
    listing = pb("images", "--digests").stdout.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.startswith("<none>") and c["dangling"] in line for line in listing)
    for bad in (["-f", "nope=1"], ["-f", "dangling=maybe"], ["-f", "before=missing:1"], ["Bad!"]):
        proc = pb("images", *bad, check=False)
        assert proc.returncode == 1 and len(proc.stderr.splitlines()) <= 2 and proc.stderr.startswith("error: ")
    # the build cache keeps an untagged image out of the default list, as BuildKit's cache does
    from layerstore.store import Store

    with Store.open(store_root) as store:
        store.cache.put("ab" * 32, c["dangling"])
    assert ids("-f", "dangling=true") == [] and c["dangling-id"] in ids("-a")


def test_rmi_untags_deletes_and_keeps_what_others_need(tmp_path: Path, pb: Pybuild, store_root: Path) -> None:
    c = _chain(store_root, tmp_path)
    blobs = store_root / "blobs/sha256"
    # by tag, the parent of another image: untagged only (app:1 still needs it)
    assert pb("rmi", "base:1").stdout == "Untagged: base:1\n"
    assert (blobs / c["base-layer"][7:]).exists()
    # by id, an image others build on: Docker's hard conflict
    proc = pb("rmi", c["mid-id"][7:19], check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(
        f"error: conflict: unable to delete {c['mid-id'][7:19]} (cannot be forced) - image has dependent child images")
    # a container's image needs -f, and then is only untagged (the container keeps it)
    container = store_root / "containers" / ("c" * 64)
    container.mkdir(parents=True)
    (container / "state.json").write_text(json.dumps({"image_digest": c["app"]}))
    proc = pb("rmi", "app:1", check=False)
    assert proc.returncode == 1 and f"container {'c' * 12} is using its referenced image {c['app-id'][7:19]}" in proc.stderr
    assert pb("rmi", "-f", "app:1").stdout == "Untagged: app:1\n"
    assert (blobs / c["app"][7:]).exists()
    # several names: each done or reported, one error line each, exit 1
    proc = pb("rmi", "nope:1", c["dangling-id"][7:19], "Bad!", check=False)
    assert proc.returncode == 1 and proc.stdout == f"Deleted: {c['dangling-id']}\n"
    assert [line.split(":")[0] for line in proc.stderr.splitlines() if not line.startswith("hint:")] == ["error", "error"]
    # once the container is gone, rmi by id deletes the image and its untagged parents that nothing
    # else needs (mid, base), each image before its parent
    import shutil

    shutil.rmtree(container)
    out = pb("rmi", c["app-id"]).stdout.splitlines()
    assert out == [f"Deleted: {c['app-id']}", f"Deleted: {c['mid-id']}", f"Deleted: {c['base-id']}"]
    assert not any(blobs.iterdir()) and not any((store_root / "commits").iterdir())
    assert not any((store_root / "layers").iterdir()) and not any((store_root / "unpacked").iterdir())
    assert pb("fsck").stdout == "ok\n"


def test_rmi_of_a_build_cache_image_drops_its_cache_entry(tmp_path: Path, pb: Pybuild, store_root: Path) -> None:
    from layerstore.store import Store

    c = _chain(store_root, tmp_path)
    with Store.open(store_root) as store:
        store.cache.put("ab" * 32, c["app"])  # the last step of a build
        store.cache.put("cd" * 32, c["mid"])  # an earlier step: stays cached
    out = pb("rmi", "app:1").stdout.splitlines()
    assert out == ["Untagged: app:1", f"Deleted: {c['app-id']}"]
    with Store.open(store_root) as store:
        assert dict(store.cache.items()) == {"cd" * 32: c["mid"]}
        assert store.resolve(c["mid-id"]).digest == c["mid"]


def test_rmi_while_another_pybuild_holds_the_store_leaves_the_deletion_to_gc(tmp_path: Path, pb: Pybuild,
                                                                              store_root: Path) -> None:
    from layerstore.store import Store

    c = _chain(store_root, tmp_path)
    with Store.open(store_root):  # as a build would hold it
        proc = pb("rmi", "-f", "app:1")
    assert proc.stdout == "Untagged: app:1\n" and proc.stderr.startswith("warning: another pybuild process")
    assert (store_root / "blobs/sha256" / c["app"][7:]).exists()
    assert c["app-id"] in pb("images", "-q", "--no-trunc").stdout  # dangling now
    freed = pb("gc", "--grace", "0").stdout  # app, mid and the dangling image: nothing reaches them now
    assert freed.startswith("Freed ") and ": 8 blobs, 3 commits, 2 unpacked layers, 2 layer records," in freed, freed
    assert pb("fsck").stdout == "ok\n"


def test_bad_input_to_tag_and_friends_is_one_error_line_and_changes_nothing(tmp_path: Path, pb: Pybuild,
                                                                             store_root: Path) -> None:
    from tests.layerstore.helpers import snapshot

    _chain(store_root, tmp_path)
    before = snapshot(store_root, dir_times=False)
    digest_ref = "app@sha256:" + "a" * 64
    cases = [
        ("tag", "nope:1", "x:1"), ("tag", "app:1", "Bad!"), ("tag", "app:1", digest_ref), ("tag", "app:1"),
        ("rmi", "nope"), ("inspect", "nope"), ("history", "nope"), ("log", "nope"), ("diff", "nope"),
        ("diff", "app:1", "nope"), ("import", tmp_path / "missing.tar", "x:1"), ("import", "/etc/passwd", "x:1"),
        ("import", tmp_path / "b", "Bad!"), ("import", "-c", "RUN rm -rf /", tmp_path / "b", "x:1"),
        ("history", "-H=maybe", "app:1"), ("bootstrap", "alpine"), ("gc", "--grace", "-1"),
    ]
    for args in cases:
        proc = pb(*args, check=False)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 1 and len(errors) == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, (args, proc.stderr)
    assert snapshot(store_root, dir_times=False) == before
    proc = make_pb(tmp_path / "b" / "etc" / "base")("images", check=False)  # --root names a file
    assert proc.returncode == 1 and proc.stderr.startswith("error: ")


def test_import_applies_changes_and_message_as_docker_import(tmp_path: Path, pb: Pybuild) -> None:
    tree = make_tree(tmp_path / "rootfs", {"bin/app": "x"})
    pb("import", "-c", 'CMD ["/bin/app", "--serve"]', "--change", "ENV MODE=prod", "-c", "WORKDIR /srv",
       "-c", "EXPOSE 8080", "-c", "LABEL team=x", "-m", "release 1", tree, "app:1")
    doc = json.loads(pb("inspect", "app:1").stdout)[0]
    assert doc["Config"]["Cmd"] == ["/bin/app", "--serve"] and "MODE=prod" in doc["Config"]["Env"]
    assert doc["Config"]["WorkingDir"] == "/srv" and doc["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert doc["Config"]["Labels"] == {"team": "x"} and doc["Comment"] == "release 1"
    assert pb("history", "app:1").stdout.splitlines()[1].rstrip().endswith("release 1")
    assert doc["Commit"]["message"] == "release 1"


def test_inspect_has_docker_image_inspect_shape(tmp_path: Path, pb: Pybuild) -> None:
    pb("import", make_tree(tmp_path / "r", {"f": "x"}), "app:1")
    doc = json.loads(pb("inspect", "app:1").stdout)[0]
    docker_keys = ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion", "Author",
                   "Config", "Architecture", "Os", "Size", "RootFS", "Metadata"]
    assert [k for k in doc if k in docker_keys] == docker_keys
    assert doc["Config"]["Cmd"] is None and doc["Config"]["WorkingDir"] == "" and doc["Config"]["Tty"] is False
    assert doc["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    assert doc["Digest"].startswith("sha256:") and doc["RepoDigests"] == [f"app@{doc['Digest']}"]
    both = json.loads(pb("inspect", "app:1", doc["Id"][7:19]).stdout)
    assert [d["Id"] for d in both] == [doc["Id"]] * 2
    proc = pb("inspect", "--type", "container", "app:1", check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout) == [] and "no such object: app:1" in proc.stderr
    hist = pb("history", "-H=false", "--no-trunc", "app:1").stdout.splitlines()
    assert hist[1].split()[0] == doc["Id"] and hist[1].split()[1] == doc["Created"]
    assert pb("history", "-q", "app:1").stdout.split() == [doc["Id"][7:19]]


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
