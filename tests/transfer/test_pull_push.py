"""push, pull, login and logout against a real docker-registry: round trips, platform choice,
mounts, auth files, and registries that lie (nothing tagged, nothing published)."""

from __future__ import annotations

import gzip
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from layerstore.auth import Credentials
from layerstore.registry import RegistryClient
from layerstore.store import Store
from layerstore.transfer_media import OCI_INDEX, OCI_MANIFEST
from layerstore.transfer_registry import pull_image, push_image
from pybuild.errors import DigestMismatch, PybuildError

from .archives import Entry, layer_tar, put_image, sha
from .conftest import PASSWORD, USER
from .servers import Fault, FaultProxy, Registry

pytestmark = pytest.mark.root


def cli(root: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybuild", "--root", str(root), *args], capture_output=True,
                          text=True, input=input, timeout=180)


def nothing_published(root: Path) -> bool:
    with Store.open(root) as store:
        return not list(store.tags.all()) and not list(store.blobs.all()) and not any(store.tmp.iterdir())


def test_push_then_pull_gives_the_same_image(busybox_store: Path, registry: Registry, unique_repo: str,
                                             tmp_path: Path) -> None:
    dest = f"{registry.host}/{unique_repo}:1"
    pushed = cli(busybox_store, "push", "busybox", dest)
    assert pushed.returncode == 0, pushed.stderr
    with Store.open(busybox_store) as store:
        local = store.resolve("busybox")
    assert pushed.stdout.strip() == local.digest  # layers as stored: the manifest is pushed as it is
    other = tmp_path / "other"
    pulled = cli(other, "pull", dest)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == local.digest
    with Store.open(other) as store:
        image = store.resolve(dest)
        assert image.config.diff_ids == local.config.diff_ids
        assert not store.layers.unpacked_path(image.layers[0].diff_id).exists()  # until first used
        assert store.layers.unpack(image.layers[0]).joinpath("bin/busybox").exists()
    again = cli(other, "pull", dest)  # everything is there already: no blob is fetched
    assert again.returncode == 0 and "blob" not in again.stderr


def test_pulled_image_runs(busybox_store: Path, registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    dest = f"{registry.host}/{unique_repo}:run"
    assert cli(busybox_store, "push", "-q", "busybox", dest).returncode == 0
    other = tmp_path / "other"
    assert cli(other, "pull", "-q", dest).returncode == 0
    proc = cli(other, "run", "--rm", dest, "echo", "pulled and running")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "pulled and running\n"


def test_push_with_gzip_converts_and_mounts_what_the_registry_has(busybox_store: Path, registry: Registry,
                                                                  unique_repo: str) -> None:
    first = f"{registry.host}/{unique_repo}:1"
    with Store.open(busybox_store) as store:
        push_image(store, "busybox", first)
        store.tag(store.resolve("busybox"), first)  # the store now knows that repository holds these blobs
        lines: list[str] = []
        pushed = push_image(store, "busybox", f"{registry.host}/{unique_repo}-gz:1", compression="gzip",
                            progress=lines.append)
        gz = store.layers.known(store.resolve("busybox").layers[0].diff_id, "gzip")
    assert gz is not None
    assert any("mounted" in line for line in lines)  # the config, from the first repository
    assert any(gz.digest in line and "uploaded" in line for line in lines)
    with RegistryClient(registry.host) as c:
        data = c.get_manifest(f"{unique_repo}-gz", "1").data
    assert json.loads(data)["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert pushed.digest == sha(data)


def test_pull_chooses_the_platform_from_an_index(busybox_store: Path, registry: Registry, unique_repo: str,
                                                  tmp_path: Path) -> None:
    with Store.open(busybox_store) as store:
        amd = push_image(store, "busybox", f"{registry.host}/{unique_repo}:amd64")
    with RegistryClient(registry.host) as c:
        arm_layer = gzip.compress(layer_tar([Entry("arm", b"arm")]), mtime=0)
        arm, arm_manifest = put_image(c, unique_repo, "arm64", arm_layer, arch="arm64")
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": arm, "size": len(arm_manifest),
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": amd.size,
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]}).encode()
        c.put_manifest(unique_repo, "multi", index, OCI_INDEX)
    other = tmp_path / "other"
    assert cli(other, "pull", "-q", f"{registry.host}/{unique_repo}:multi").stdout.strip() == amd.digest
    proc = cli(other, "pull", "-q", "--platform", "linux/arm64", f"{registry.host}/{unique_repo}:multi")
    assert proc.stdout.strip() == arm
    proc = cli(other, "pull", "--platform", "linux/s390x", f"{registry.host}/{unique_repo}:multi")
    assert proc.returncode == 1 and "no image for linux/s390x" in proc.stderr


def test_short_names_are_dockers(busybox_store: Path, registry: Registry, tmp_path: Path) -> None:
    """`busybox` is docker.io/library/busybox:latest: pulled from that repository and tag of the
    registry (Docker Hub's API host, registry-1.docker.io, is not reached offline: the client is
    pointed at the local registry), and tagged with its familiar name."""
    with Store.open(busybox_store) as store, RegistryClient(registry.host) as c:
        pushed = push_image(store, "busybox", "busybox", client=c)  # to library/busybox:latest
    assert RegistryClient("docker.io").transport.host == "registry-1.docker.io"
    with Store.open(tmp_path / "other") as store, RegistryClient(registry.host) as c:
        assert pull_image(store, "busybox", client=c).digest == pushed.digest
        assert [t.name for t in store.tags.all()] == ["busybox:latest"]
        with pytest.raises(PybuildError, match="manifest unknown"):
            pull_image(store, "busybox:1.0", client=c)


def test_pull_of_an_unknown_tag_is_one_error(registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    proc = cli(tmp_path / "s", "pull", f"{registry.host}/{unique_repo}:nope")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].startswith(f"error: {registry.host}/{unique_repo}:nope: manifest unknown")


def test_a_corrupt_layer_from_the_registry_publishes_nothing(busybox_store: Path, registry: Registry,
                                                             unique_repo: str, tmp_path: Path) -> None:
    with Store.open(busybox_store) as store:
        push_image(store, "busybox", f"{registry.host}/{unique_repo}:1")
    root = tmp_path / "other"
    with FaultProxy(registry.host) as proxy:
        proxy.add(Fault("GET", "/blobs/sha256", "corrupt", times=None))
        with Store.open(root) as store, pytest.raises(DigestMismatch):
            pull_image(store, f"{proxy.host}/{unique_repo}:1")
    assert nothing_published(root)


def test_a_config_whose_diff_id_lies_publishes_nothing(registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    layer = gzip.compress(layer_tar([Entry("f", b"real")]), mtime=0)
    with RegistryClient(registry.host) as c:
        put_image(c, unique_repo, "1", layer, diff_id=sha(b"not this layer"))
    root = tmp_path / "other"
    proc = cli(root, "pull", f"{registry.host}/{unique_repo}:1")
    assert proc.returncode == 1
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")][0].count("diff_id") == 1
    assert nothing_published(root)


def test_login_push_pull_logout_with_basic_auth(busybox_store: Path, basic_registry: Registry, unique_repo: str,
                                                tmp_path: Path, private_auth_files: Path) -> None:
    dest = f"{basic_registry.host}/{unique_repo}:1"
    denied = cli(busybox_store, "push", "busybox", dest)
    assert denied.returncode == 1 and f"hint: pybuild login {basic_registry.host}" in denied.stderr
    wrong = cli(busybox_store, "login", "-u", USER, "--password-stdin", basic_registry.host, input="wrong\n")
    assert wrong.returncode == 1
    assert not (private_auth_files / ".config/pybuild/auth.json").exists()
    ok = cli(busybox_store, "login", "-u", USER, "--password-stdin", basic_registry.host, input=PASSWORD + "\n")
    assert ok.returncode == 0, ok.stderr
    auth_file = private_auth_files / ".config/pybuild/auth.json"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    assert cli(busybox_store, "push", "-q", "busybox", dest).returncode == 0
    assert cli(tmp_path / "other", "pull", "-q", dest).returncode == 0
    out = cli(busybox_store, "logout", basic_registry.host)
    assert out.returncode == 0 and basic_registry.host not in json.loads(auth_file.read_text())["auths"]
    assert cli(tmp_path / "third", "pull", dest).returncode == 1


def test_docker_config_credentials_are_used(busybox_store: Path, basic_registry: Registry, unique_repo: str,
                                            private_auth_files: Path) -> None:
    import base64
    cfg = private_auth_files / ".docker/config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"auths": {basic_registry.host: {"auth": base64.b64encode(
        f"{USER}:{PASSWORD}".encode()).decode()}}}))
    proc = cli(busybox_store, "push", "-q", "busybox", f"{basic_registry.host}/{unique_repo}:1")
    assert proc.returncode == 0, proc.stderr


def test_bearer_token_registry_push_and_pull(busybox_store: Path, token_registry: Registry, unique_repo: str,
                                             tmp_path: Path) -> None:
    dest = f"{token_registry.host}/{unique_repo}:1"
    creds = Credentials(USER, PASSWORD)
    with Store.open(busybox_store) as store, RegistryClient(token_registry.host, credentials=creds) as c:
        pushed = push_image(store, "busybox", dest, client=c)
    with Store.open(tmp_path / "other") as store, RegistryClient(token_registry.host, credentials=creds) as c:
        assert pull_image(store, dest, client=c).digest == pushed.digest
    with Store.open(tmp_path / "third") as store, pytest.raises(PybuildError):
        pull_image(store, dest)  # no credentials on file


def test_a_local_registry_that_speaks_only_tls(busybox_store: Path, tmp_path: Path) -> None:
    """Its certificate is checked (and refused, with the way out in a hint) unless --tls-verify=false."""
    from tests.conftest import need_tool

    from .servers import self_signed_certificate

    need_tool("openssl")
    need_tool("docker-registry")
    with Registry(tmp_path / "tls-registry", tls=self_signed_certificate(tmp_path)) as registry:
        dest = f"{registry.host}/tls/app:1"
        refused = cli(busybox_store, "push", "busybox", dest)
        assert refused.returncode == 1 and "TLS certificate not trusted" in refused.stderr
        assert "hint: use --tls-verify=false" in refused.stderr
        pushed = cli(busybox_store, "push", "-q", "--tls-verify=false", "busybox", dest)
        assert pushed.returncode == 0, pushed.stderr
        pulled = cli(tmp_path / "other", "pull", "-q", "--tls-verify=false", dest)
        assert pulled.returncode == 0 and pulled.stdout == pushed.stdout
