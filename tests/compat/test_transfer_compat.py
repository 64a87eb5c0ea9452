"""pybuild's archives and pushes against the real tools, both ways:
- what pybuild saves is read by `skopeo copy`, `podman load` (and runs under podman), `umoci unpack`;
- what pybuild pushes is read by `skopeo inspect`/`skopeo copy` and runs under `podman run`;
- what `podman save`, `skopeo copy` and `buildah push` write (oci-archive, oci-dir, docker-archive;
  gzip and zstd) loads into pybuild and runs with `pybuild run`.
podman, skopeo and buildah share one private storage (vfs) per module, set up as
../shared/reference/peer-tools.md says (runc, lock_type=file)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.transfer.conftest import registry  # noqa: F401 - the module's registry fixture
from tests.transfer.servers import Registry

pytestmark = [pytest.mark.compat, pytest.mark.root]

IMAGE = "docker.io/library/busybox:latest"


def pb(root: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pybuild", "--root", str(root), *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pybuild {args}: {proc.stderr}"
    return proc


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    proc = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc


@dataclass
class Peers:
    """podman, buildah and skopeo on one private containers-storage."""

    work: Path

    @property
    def env(self) -> dict[str, str]:
        return {"CONTAINERS_CONF": str(self.work / "containers.conf")}

    @property
    def storage(self) -> list[str]:
        return ["--root", str(self.work / "root"), "--runroot", str(self.work / "run"), "--storage-driver", "vfs"]

    def podman(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run("podman", *self.storage, "--tmpdir", self.work / "tmp", *args, env=self.env)

    def buildah(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run("buildah", *self.storage, *args, env=self.env)

    def storage_ref(self, image: str) -> str:
        return f"containers-storage:[vfs@{self.work / 'root'}+{self.work / 'run'}]{image}"


@pytest.fixture(scope="module")
def source_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pybuild store holding busybox (and its gzip twin, for umoci)."""
    root = tmp_path_factory.mktemp("pb") / "store"
    pb(root, "bootstrap", "busybox")
    return root


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory, source_store: Path) -> Iterator[Peers]:
    for tool in ("podman", "buildah", "skopeo", "runc"):
        need_tool(tool)
    work = tmp_path_factory.mktemp("peers")
    (work / "tmp").mkdir()
    (work / "containers.conf").write_text(
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'lock_type = "file"\ntmp_dir = "{work / "tmp"}"\n'
    )
    p = Peers(work)
    archive = work / "busybox.tar"
    pb(source_store, "save", "busybox", "-o", archive)
    p.podman("load", "-i", archive)
    try:
        yield p
    finally:
        subprocess.run(["podman", *p.storage, "--tmpdir", str(work / "tmp"), "system", "reset", "--force"],
                       capture_output=True, env={**__import__("os").environ, **p.env}, timeout=120)


# ---------------------------------------------------------------------------------- ours -> theirs


def test_skopeo_copies_what_pybuild_saves(source_store: Path, tmp_path: Path) -> None:
    need_tool("skopeo")
    archive = tmp_path / "bb.tar"
    pb(source_store, "save", "busybox", "-o", archive)
    digest = pb(source_store, "inspect", "busybox").stdout
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{archive}:busybox:latest").stdout)
    assert info["Digest"] in digest
    run("skopeo", "copy", f"oci-archive:{archive}:busybox:latest", f"oci:{tmp_path / 'copy'}:bb")
    assert json.loads((tmp_path / "copy/index.json").read_text())["manifests"][0]["digest"] == info["Digest"]


def test_podman_loads_and_runs_what_pybuild_saves(peers: Peers) -> None:
    out = peers.podman("run", "--rm", "--network", "none", IMAGE, "echo", "hello from podman")
    assert out.stdout == "hello from podman\n"


def test_podman_loads_a_pybuild_docker_archive(peers: Peers, source_store: Path, tmp_path: Path) -> None:
    archive = tmp_path / "docker.tar"
    pb(source_store, "tag", "busybox", "dockerfmt:1")
    pb(source_store, "save", "--format", "docker", "-o", archive, "dockerfmt:1")
    loaded = peers.podman("load", "-i", archive).stdout
    # RepoTags are familiar names, as `docker save` writes them; podman files short names under localhost/
    assert "Loaded image: localhost/dockerfmt:1" in loaded, loaded
    out = peers.podman("run", "--rm", "--network", "none", "localhost/dockerfmt:1", "echo", "docker fmt")
    assert out.stdout == "docker fmt\n"


def test_umoci_unpacks_a_gzip_save(source_store: Path, tmp_path: Path) -> None:
    need_tool("umoci")
    layout = tmp_path / "layout"
    pb(source_store, "save", "--format", "oci-dir", "--compression", "gzip", "-o", layout, "busybox")
    run("umoci", "unpack", "--image", f"{layout}:busybox:latest", tmp_path / "bundle")
    assert (tmp_path / "bundle/rootfs/bin/busybox").exists()


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_what_pybuild_pushes_checks_out_and_runs_under_podman(peers: Peers, source_store: Path, registry: Registry,
                                                              compression: str, tmp_path: Path) -> None:
    ref = f"{registry.host}/compat/pushed-{compression}:1"
    digest = pb(source_store, "push", "-q", "--compression", compression, "busybox", ref).stdout.strip()
    info = json.loads(run("skopeo", "inspect", "--tls-verify=false", f"docker://{ref}").stdout)
    assert info["Digest"] == digest
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'copy'}:x")
    out = peers.podman("run", "--rm", "--network", "none", "--tls-verify=false", ref, "echo", f"pushed {compression}")
    assert out.stdout == f"pushed {compression}\n"


# ---------------------------------------------------------------------------------- theirs -> ours


def _written_by(peers: Peers, how: str, tmp_path: Path) -> Path:
    """An archive of busybox written by a peer tool in the way `how` names."""
    src = peers.storage_ref(IMAGE)
    if how == "podman-save-oci-archive":
        out = tmp_path / "p.tar"
        peers.podman("save", "--format", "oci-archive", "-o", out, IMAGE)
    elif how == "podman-save-docker-archive":
        out = tmp_path / "p.tar"
        peers.podman("save", "--format", "docker-archive", "-o", out, IMAGE)
    elif how == "podman-save-oci-dir":
        out = tmp_path / "pdir"
        peers.podman("save", "--format", "oci-dir", "-o", out, IMAGE)
    elif how == "skopeo-oci-archive-gzip":
        out = tmp_path / "s.tar"
        run("skopeo", "copy", "--dest-compress-format", "gzip", src, f"oci-archive:{out}:{IMAGE}")
    elif how == "skopeo-oci-dir-zstd":
        out = tmp_path / "sdir"
        run("skopeo", "copy", "--dest-compress-format", "zstd", src, f"oci:{out}:{IMAGE}")
    elif how == "skopeo-docker-archive":
        out = tmp_path / "s.tar"
        run("skopeo", "copy", src, f"docker-archive:{out}:{IMAGE}")
    elif how == "buildah-push-oci-archive-gzip":
        out = tmp_path / "b.tar"
        peers.buildah("push", IMAGE, f"oci-archive:{out}:{IMAGE}")
    elif how == "buildah-push-oci-archive-zstd":
        out = tmp_path / "b.tar"
        peers.buildah("push", "--compression-format", "zstd", IMAGE, f"oci-archive:{out}:{IMAGE}")
    else:
        raise ValueError(how)
    return out


PEER_ARCHIVES = [
    "podman-save-oci-archive", "podman-save-docker-archive", "podman-save-oci-dir",
    "skopeo-oci-archive-gzip", "skopeo-oci-dir-zstd", "skopeo-docker-archive",
    "buildah-push-oci-archive-gzip", "buildah-push-oci-archive-zstd",
]


@pytest.mark.parametrize("how", PEER_ARCHIVES)
def test_peer_archives_load_and_run(peers: Peers, how: str, tmp_path: Path) -> None:
    archive = _written_by(peers, how, tmp_path)
    if how.endswith("zstd"):
        layers = _layer_media_types(archive)
        assert layers and all(t.endswith("+zstd") for t in layers), layers
    root = tmp_path / "store"
    loaded = pb(root, "load", "-i", archive).stdout
    assert loaded.splitlines() == ["Loaded image: busybox:latest"], loaded
    out = pb(root, "run", "--rm", "busybox", "echo", f"loaded from {how}")
    assert out.stdout == f"loaded from {how}\n"


def _layer_media_types(archive: Path) -> list[str]:
    def read(name: str) -> bytes:
        if archive.is_dir():
            return (archive / name).read_bytes()
        with tarfile.open(archive) as tar:
            f = tar.extractfile(name)
            assert f is not None
            return f.read()

    index = json.loads(read("index.json"))
    digest = index["manifests"][0]["digest"].split(":")[1]
    return [layer["mediaType"] for layer in json.loads(read(f"blobs/sha256/{digest}"))["layers"]]

