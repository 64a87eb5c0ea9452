"""fsck finds every kind of damage, one `error:` line per problem and a failing exit status, and
takes what a crash leaves for warnings; gc keeps what is reached, knows the builder's files and
containers, and a gc killed at any point leaves a store that fsck passes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from layerstore.digests import canonical_json
from layerstore.store import Store
from tests.conftest import make_pb
from tests.layerstore.helpers import make_tree

OLD = time.time() - 30 * 24 * 3600


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A store with base:1 <- app:1 (two layers) and its names."""
    work = tmp_path_factory.mktemp("fsck")
    root = work / "store"
    with Store.open(root) as store:
        base = store.commit(make_tree(work / "b", {"etc/base": "b" * 5000}), parent=None, created_by="FROM scratch")
        store.tag(base, "base:1")
        app = store.commit(make_tree(work / "a", {"app": "a" * 5000}), parent=base, created_by="COPY app /")
        store.tag(app, "app:1")
    names = {"base": base.digest, "app": app.digest, "app-id": app.id, "base-layer": base.layers[0].digest,
             "app-layer": app.layers[1].digest, "app-diff": app.layers[1].diff_id}
    return root, names


@pytest.fixture
def damaged(template: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "store"
    subprocess.run(["cp", "-a", str(template[0]), str(root)], check=True)
    return root, template[1]


def _blob(root: Path, digest: str) -> Path:
    path = root / "blobs/sha256" / digest[7:]
    path.chmod(0o644)
    return path


def _flip(root: Path, n: dict[str, str]) -> None:
    path = _blob(root, n["app-layer"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _flip_config(root: Path, n: dict[str, str]) -> None:
    path = _blob(root, n["app-id"])
    path.write_bytes(path.read_bytes().replace(b"COPY app", b"COPY APP"))


def _truncate(root: Path, n: dict[str, str]) -> None:
    path = _blob(root, n["base-layer"])
    path.write_bytes(path.read_bytes()[:-7])


def _forged_history(root: Path, n: dict[str, str]) -> None:
    """An image whose config has one more non-empty history entry than it has layers."""
    with Store.open(root) as store:
        app = store.resolve("app:1")
        doc = json.loads(app.config_bytes)
        doc["history"].append({"created_by": "RUN forged"})
        config = store.blobs.put(canonical_json(doc))
        manifest = json.loads(app.manifest_bytes)
        manifest["config"] |= {"digest": config.digest, "size": config.size}
        forged = store.blobs.put(canonical_json(manifest))
        store.tags.set("forged:1", forged.digest)


def _lose_parent(root: Path, n: dict[str, str]) -> None:
    make_pb(root)("rmi", "base:1")  # untagged only: app:1 builds on it
    _blob(root, n["base"]).unlink()
    (root / "commits" / n["base"][7:]).unlink()


def _tag_file(root: Path, name: str) -> Path:
    return root / "refs/tags/docker.io/library" / name.split(":")[0] / (":" + name.split(":")[1])


DAMAGE: dict[str, tuple[Callable[[Path, dict[str, str]], None], str]] = {
    "flipped-byte": (_flip, "blob {app-layer}: digest mismatch"),
    "truncated-blob": (_truncate, "blob {base-layer}: digest mismatch"),
    "flipped-config": (_flip_config, "blob {app-id}: digest mismatch"),
    "missing-layer-blob": (lambda r, n: _blob(r, n["app-layer"]).unlink(), "layer {app-layer} is missing"),
    "missing-manifest": (lambda r, n: _blob(r, n["app"]).unlink(), "manifest {app} is missing"),
    "missing-config": (lambda r, n: _blob(r, n["app-id"]).unlink(), "blob {app-id} is not in the store"),
    "dangling-tag": (lambda r, n: _tag_file(r, "app:1").write_text("sha256:" + "e" * 64 + "\n"),
                     "refs/tags/docker.io/library/app/:1: manifest sha256:eeee"),
    "garbage-tag": (lambda r, n: _tag_file(r, "app:1").write_text("hello\n"), "does not hold a digest"),
    "history-invariant": (_forged_history, "history has 3 non-empty entries but the image has 2 layers"),
    "missing-parent": (_lose_parent, "parent {base} is missing"),
    "index-names-missing-manifest": (
        lambda r, n: (r / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "d" * 64, "size": 1}]})),
        "index.json: names manifest sha256:dddd"),
    "index-not-json": (lambda r, n: (r / "index.json").write_text("{"), "index.json: not valid JSON"),
    "oci-layout-wrong": (lambda r, n: (r / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}'),
                         "oci-layout: missing or not"),
    "commit-record-malformed": (lambda r, n: (r / "commits" / n["app"][7:]).write_text("[]"), "malformed commit record"),
    "layer-record-malformed": (lambda r, n: (r / "layers" / (n["app-diff"][7:] + ".json")).write_text("{}"),
                               "malformed layer record"),
    "container-image-missing": (
        lambda r, n: ((r / "containers/c1").mkdir(), (r / "containers/c1/state.json").write_text(
            json.dumps({"image_digest": "sha256:" + "c" * 64}))),
        "container c1: manifest sha256:cccc"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_fsck_reports_each_kind_of_damage_in_one_line(kind: str, damaged: tuple[Path, dict[str, str]]) -> None:
    root, names = damaged
    damage, fragment = DAMAGE[kind]
    pb = make_pb(root)
    assert pb("fsck").stdout == "ok\n"
    damage(root, names)
    proc = pb("fsck", check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    assert len(errors) == 1, proc.stderr
    assert fragment.format(**names) in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_fsck_full_rehashes_layers(damaged: tuple[Path, dict[str, str]]) -> None:
    """A layer blob that is intact as a blob but is not the layer its config names (a record
    pointing at the wrong content) is found only by --full."""
    root, n = damaged
    with Store.open(root) as store:
        app = store.resolve("app:1")
        other = store.blobs.put(json.dumps("not a layer").encode())
        manifest = json.loads(app.manifest_bytes)
        manifest["layers"][1] |= {"digest": other.digest, "size": other.size}
        forged = store.blobs.put(canonical_json(manifest))
        store.tags.set("forged:1", forged.digest)
    pb = make_pb(root)
    assert pb("fsck").stdout == "ok\n"
    proc = pb("fsck", "--full", check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and other.digest in errors[0], proc.stderr


def test_what_a_crash_leaves_is_only_warned_about(damaged: tuple[Path, dict[str, str]]) -> None:
    root, n = damaged
    with Store.open(root) as store:
        stale_index = store.layout.index.read_bytes()
        store.tags.set("extra:1", n["app"])
        unreachable = store.commit(make_tree(store.mkdtemp(), {"u": "u"}), parent=None, created_by="RUN u")
    (root / "index.json").write_bytes(stale_index)  # a tag change killed before index.json was rewritten
    (root / "tmp/blob-leftover").write_bytes(b"x")
    (root / "refs/tags/docker.io/library/app/:2.lock").write_text("")
    _blob(root, unreachable.digest).unlink()  # a gc killed between removing a manifest and its record
    proc = make_pb(root)("fsck")
    warnings = proc.stderr.splitlines()
    assert proc.stdout == "ok\n" and all(w.startswith("warning: ") for w in warnings)
    assert len(warnings) == 4, warnings
    assert any(f"unreachable commit {unreachable.digest}" in w for w in warnings)


def _set_old(*paths: Path) -> None:
    for p in paths:
        os.utime(p, (OLD, OLD), follow_symlinks=False)


def test_gc_knows_the_builders_files_and_containers(damaged: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, n = damaged
    cache = root / "cache"
    for sub in ("contenthash", "explain"):
        (cache / sub).mkdir()
        (cache / sub / "fresh.json").write_text("{}")
        (cache / sub / "stale.json").write_text("{}")
        (cache / sub / ".stale.json.1.tmp").write_text("")
        _set_old(cache / sub / "stale.json", cache / sub / ".stale.json.1.tmp")
    mount = cache / "mounts" / ("a" * 64)
    (mount / "data").mkdir(parents=True)
    (mount / "data/kept").write_text("between builds")
    (mount / "lock").write_text("")
    (mount / ".new-half").mkdir()
    _set_old(mount / "data/kept", mount / "data", mount / "lock", mount / ".new-half", mount)
    half = root / "containers" / ("b" * 64)
    (half / "upper").mkdir(parents=True)
    _set_old(half / "upper", half)
    live = root / "containers" / ("c" * 64)
    live.mkdir()
    (live / "state.json").write_text(json.dumps({"image_digest": n["app"]}))
    _set_old(live / "state.json", live)
    volume = root / "volumes/data"
    volume.mkdir(parents=True)
    _set_old(volume)
    pb = make_pb(root)
    assert pb("rmi", "-f", "app:1").stdout == "Untagged: app:1\n"  # the container keeps the image

    out = pb("gc", "-n", "--grace", "0").stdout
    assert out.endswith(", 2 build-cache files, 1 unfinished containers\n"), out
    assert (half / "upper").exists() and (cache / "explain/stale.json").exists()  # a dry run removes nothing
    out = pb("gc").stdout  # the grace period protects the container that is being made
    assert out.endswith(" 3 temp entries, 2 build-cache files\n"), out
    assert sorted(p.name for p in (cache / "contenthash").iterdir()) == ["fresh.json"]
    assert sorted(p.name for p in (cache / "explain").iterdir()) == ["fresh.json"]
    assert (mount / "data/kept").exists() and not (mount / ".new-half").exists() and half.exists()
    out = pb("gc", "--grace", "0").stdout
    assert out.endswith(" 0 temp entries, 1 unfinished containers\n") and not half.exists()
    assert volume.exists() and live.exists()
    with Store.open(root) as store:
        assert store.resolve(n["app-id"]).digest == n["app"]

    out = pb("gc", "--prune-cache", "--cache-mounts", "--grace", "0").stdout
    assert "2 build-cache files, 1 cache mounts" in out and not (cache / "mounts" / mount.name).exists()
    assert pb("fsck").stdout == "ok\n"


def test_gc_keeps_a_cache_mount_a_build_holds(damaged: tuple[Path, dict[str, str]]) -> None:
    import fcntl

    root, _ = damaged
    mount = root / "cache/mounts" / ("a" * 64)
    (mount / "data").mkdir(parents=True)
    fd = os.open(mount / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        out = make_pb(root)("gc", "--cache-mounts", "--grace", "0").stdout
    finally:
        os.close(fd)
    assert "cache mounts" not in out and (mount / "data").exists()


# -- a gc or an rmi killed at every point ------------------------------------------------------


def _garbage_store(root: Path, work: Path) -> None:
    with Store.open(root) as store:
        base = store.commit(make_tree(work / "b", {"etc/base": "b"}), parent=None, created_by="FROM scratch")
        store.tag(base, "base:1")
        previous = base
        for i in range(3):
            previous = store.commit(make_tree(work / f"g{i}", {f"g{i}": str(i)}), parent=previous, created_by=f"RUN {i}")
        store.tag(previous, "doomed:1")
        store.tags.delete("doomed:1")
    for path in root.rglob("*"):
        _set_old(path)


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["gc", "rmi"])
def test_sigkill_at_every_point_of_a_sweep_leaves_a_store_fsck_passes(operation: str, tmp_path: Path) -> None:
    from layerstore.fsck import check
    from layerstore.gc import collect, delete_images
    from tests.layerstore.test_faults import KILL_POINTS, run_killed

    template = tmp_path / "template"
    _garbage_store(template, tmp_path)
    with Store.open(template) as store:
        doomed = [r.manifest for r in store.images.all_commits() if not store.tags.of(r.manifest)]

    def sweep(root: Path) -> None:
        with Store.open(root, exclusive=True) as store:
            if operation == "gc":
                collect(store, grace_seconds=0)
            else:
                delete_images(store, doomed)

    point, killed = 0, 0
    while True:
        point += 1
        root = tmp_path / f"s{point}"
        shutil.copytree(template, root, symlinks=True)
        status = run_killed(lambda: sweep(root), point, KILL_POINTS)
        with Store.open(root) as store:
            assert [p.message for p in check(store) if p.severity == "error"] == [], point
            assert store.resolve("base:1")
        shutil.rmtree(root)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0
            break
        killed += 1
    assert killed >= 10, killed
