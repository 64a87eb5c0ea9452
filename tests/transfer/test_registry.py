"""The registry client against a real `docker-registry` (CNCF distribution 2.8): uploads (HEAD
first, mount, monolithic, chunked and resumed), manifests with their media types, index platform
selection, Basic and Bearer auth, retries, and a registry (behind a fault proxy) that lies."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess

import pytest

from layerstore import registry as registry_mod
from layerstore.auth import Credentials
from layerstore.registry import RegistryClient
from layerstore.registry_http import TransientError
from layerstore.transfer_media import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Platform
from layerstore.transfer_verify import SizeMismatch, digest_of
from pybuild.errors import DigestMismatch, RegistryError

from .conftest import PASSWORD, USER
from .archives import body, put_image
from .servers import Fault, FaultProxy, Registry, TokenServer


LAYER = gzip.compress(b"pretend this is a tar " * 1000)


def test_upload_asks_first_then_mounts_then_uploads(registry: Registry, unique_repo: str) -> None:
    blob = os.urandom(100_000)
    d = digest_of(blob)
    with RegistryClient(registry.host) as c:
        assert c.upload_blob(unique_repo, d, body(blob)) == "uploaded"
        assert c.upload_blob(unique_repo, d, body(blob)) == "exists"
        assert c.upload_blob(unique_repo + "-other", d, body(blob), mount_from=[unique_repo]) == "mounted"
        assert c.blob_size(unique_repo + "-other", d) == len(blob)
        out = io.BytesIO()
        c.fetch_blob(unique_repo + "-other", d, len(blob), out)
    assert out.getvalue() == blob


def test_a_mount_the_registry_declines_becomes_an_upload(registry: Registry, unique_repo: str) -> None:
    blob = os.urandom(1000)
    with RegistryClient(registry.host) as c:
        assert c.upload_blob(unique_repo, digest_of(blob), body(blob), mount_from=["no/such-repo"]) == "uploaded"
        assert c.blob_size(unique_repo, digest_of(blob)) == 1000


def test_big_blobs_go_up_in_chunks(registry: Registry, unique_repo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_mod, "MONOLITHIC_MAX", 100_000)
    monkeypatch.setattr(registry_mod, "UPLOAD_CHUNK", 300_000)
    blob = os.urandom(1_000_001)
    with FaultProxy(registry.host) as proxy, RegistryClient(proxy.host) as c:
        assert c.upload_blob(unique_repo, digest_of(blob), body(blob)) == "uploaded"
        out = io.BytesIO()
        c.fetch_blob(unique_repo, digest_of(blob), len(blob), out)
    assert out.getvalue() == blob
    ranges = [h.get("Content-Range") for m, _, h in proxy.seen if m == "PATCH"]
    assert ranges == ["0-299999", "300000-599999", "600000-899999", "900000-1000000"]


def test_a_failed_chunk_resumes_where_the_registry_says(registry: Registry, unique_repo: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_mod, "MONOLITHIC_MAX", 100_000)
    monkeypatch.setattr(registry_mod, "UPLOAD_CHUNK", 300_000)
    blob = os.urandom(700_000)
    with FaultProxy(registry.host) as proxy, RegistryClient(proxy.host) as c:
        proxy.add(Fault("PATCH", "/blobs/uploads/", "status", status=503, times=1, skip=1))  # fail the 2nd chunk
        assert c.upload_blob(unique_repo, digest_of(blob), body(blob)) == "uploaded"
    assert [m for m, _, _ in proxy.seen].count("PATCH") == 4  # 0-299999, (503), resumed twice more
    with RegistryClient(registry.host) as c:
        assert c.blob_size(unique_repo, digest_of(blob)) == len(blob)


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_manifests_round_trip_with_their_media_type(registry: Registry, unique_repo: str, media_type: str) -> None:
    with RegistryClient(registry.host) as c:
        digest, manifest = put_image(c, unique_repo, "1", LAYER, media_type=media_type)
        by_tag = c.get_manifest(unique_repo, "1")
        by_digest = c.get_manifest(unique_repo, digest)
        assert c.manifest_digest(unique_repo, "1") == digest
        assert c.manifest_digest(unique_repo, "nope") is None
        assert c.list_tags(unique_repo) == ["1"]
    assert by_tag == by_digest
    assert (by_tag.media_type, by_tag.digest, by_tag.data) == (media_type, digest, manifest)


def test_an_unknown_tag_is_a_404_registry_error(registry: Registry, unique_repo: str) -> None:
    with RegistryClient(registry.host) as c, pytest.raises(RegistryError) as e:
        c.get_manifest(unique_repo, "missing")
    assert e.value.status == 404
    assert f"{registry.host}/{unique_repo}:missing: manifest unknown" in e.value.message


@pytest.mark.parametrize("index_type", [OCI_INDEX, DOCKER_LIST])
def test_an_index_resolves_to_the_requested_platform(registry: Registry, unique_repo: str, index_type: str) -> None:
    child_type = OCI_MANIFEST if index_type == OCI_INDEX else DOCKER_MANIFEST
    with RegistryClient(registry.host) as c:
        entries = []
        for arch, variant in (("arm64", "v8"), ("amd64", "")):
            layer = gzip.compress(arch.encode() * 100)
            d, m = put_image(c, unique_repo, f"only-{arch}", layer, arch=arch, media_type=child_type)
            plat = {"os": "linux", "architecture": arch} | ({"variant": variant} if variant else {})
            entries.append({"mediaType": child_type, "digest": d, "size": len(m), "platform": plat})
        index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}).encode()
        c.put_manifest(unique_repo, "multi", index, index_type)
        amd, top = c.resolve(unique_repo, "multi", Platform("linux", "amd64"))
        arm, _ = c.resolve(unique_repo, "multi", Platform("linux", "arm64"))
        default, _ = c.resolve(unique_repo, "multi")
        single, none = c.resolve(unique_repo, "only-amd64")
    assert top is not None and top.media_type == index_type and top.is_index
    assert amd.digest == entries[1]["digest"] and arm.digest == entries[0]["digest"]
    assert default.digest == amd.digest  # this machine is linux/amd64
    assert none is None and single.digest == amd.digest


# -- auth -----------------------------------------------------------------------------------------

def test_basic_auth_without_credentials_says_to_log_in(basic_registry: Registry, unique_repo: str) -> None:
    with RegistryClient(basic_registry.host, credentials=None) as c, pytest.raises(RegistryError) as e:
        c.get_manifest(unique_repo, "1")
    assert e.value.status == 401
    assert e.value.hint == f"pybuild login {basic_registry.host}"


def test_basic_auth_with_wrong_password_is_refused(basic_registry: Registry, unique_repo: str) -> None:
    with RegistryClient(basic_registry.host, credentials=Credentials(USER, "wrong")) as c:
        with pytest.raises(RegistryError) as e:
            c.check_login()
    assert e.value.status == 401


def test_basic_auth_pushes_and_pulls(basic_registry: Registry, unique_repo: str) -> None:
    with RegistryClient(basic_registry.host, credentials=Credentials(USER, PASSWORD)) as c:
        c.check_login()
        digest, _ = put_image(c, unique_repo, "1", LAYER)
        assert c.get_manifest(unique_repo, "1").digest == digest


def test_bearer_tokens_are_fetched_with_the_scopes_needed(token_registry: Registry, token_server: TokenServer,
                                                          unique_repo: str) -> None:
    token_server.requests.clear()
    with RegistryClient(token_registry.host, credentials=Credentials(USER, PASSWORD)) as c:
        digest, _ = put_image(c, unique_repo, "1", LAYER)
        blob = os.urandom(5000)
        c.upload_blob(unique_repo, digest_of(blob), body(blob))
        assert c.upload_blob(unique_repo + "-b", digest_of(blob), body(blob), mount_from=[unique_repo]) == "mounted"
        assert c.get_manifest(unique_repo, "1").digest == digest
    assert all(user == USER for user, _ in token_server.requests)
    asked = [s for _, scopes in token_server.requests for s in scopes]
    assert f"repository:{unique_repo}:pull,push" in asked
    # The mount's token also grants pull on the source repository.
    assert any(f"repository:{unique_repo}-b:pull,push" in scopes and any(s.startswith(f"repository:{unique_repo}:")
               for s in scopes) for _, scopes in token_server.requests)
    # One token serves many requests: far fewer token requests than API requests.
    assert len(token_server.requests) <= 6


def test_bearer_anonymous_is_refused_with_a_hint(token_registry: Registry, unique_repo: str) -> None:
    with RegistryClient(token_registry.host, credentials=None) as c, pytest.raises(RegistryError) as e:
        c.get_manifest(unique_repo, "1")
    assert "refused access anonymously" in e.value.message
    assert e.value.hint == f"pybuild login {token_registry.host}"


def test_bearer_login_check_refuses_a_wrong_password(token_registry: Registry) -> None:
    with RegistryClient(token_registry.host, credentials=Credentials(USER, "nope")) as c:
        with pytest.raises(RegistryError, match=f"refused access as {USER}"):
            c.check_login()
    with RegistryClient(token_registry.host, credentials=Credentials(USER, PASSWORD)) as c:
        c.check_login()


# -- retries and lies -----------------------------------------------------------------------------

def test_5xx_and_429_are_retried_with_backoff(proxy: FaultProxy, unique_repo: str) -> None:
    with RegistryClient(proxy.upstream) as c:
        digest, _ = put_image(c, unique_repo, "1", LAYER)
    proxy.add(Fault("GET", "/manifests/", "status", status=503, times=2))
    proxy.add(Fault("GET", "/blobs/", "status", status=429, times=1, retry_after="0"))
    with RegistryClient(proxy.host) as c:
        m = c.get_manifest(unique_repo, "1")
        layer = json.loads(m.data)["layers"][0]
        out = io.BytesIO()
        c.fetch_blob(unique_repo, layer["digest"], layer["size"], out)
    assert m.digest == digest and out.getvalue() == LAYER
    assert [f.hits for f in proxy.faults] == [2, 1]


def test_a_registry_that_keeps_failing_is_given_up_on(proxy: FaultProxy, unique_repo: str) -> None:
    proxy.add(Fault("GET", "/manifests/", "status", status=500, times=None))
    with RegistryClient(proxy.host, retries=2) as c, pytest.raises(TransientError, match=r"HTTP 500 \(gave up after 3 tries\)"):
        c.get_manifest(unique_repo, "1")


def test_a_dropped_connection_is_retried(proxy: FaultProxy, unique_repo: str) -> None:
    with RegistryClient(proxy.upstream) as c:
        digest, _ = put_image(c, unique_repo, "1", LAYER)
    proxy.add(Fault("GET", "/manifests/", "hangup", times=1))
    with RegistryClient(proxy.host) as c:
        assert c.get_manifest(unique_repo, "1").digest == digest


def _layer_of(c: RegistryClient, repo: str) -> dict[str, object]:
    return json.loads(c.get_manifest(repo, "1").data)["layers"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind, error, match", [
    ("corrupt", DigestMismatch, "digest mismatch"),
    ("extra", SizeMismatch, "size mismatch"),
])
def test_a_blob_that_is_not_what_its_descriptor_says_is_refused(proxy: FaultProxy, unique_repo: str, kind: str,
                                                                 error: type[Exception], match: str) -> None:
    with RegistryClient(proxy.upstream) as c:
        put_image(c, unique_repo, "1", LAYER)
    proxy.add(Fault("GET", "/blobs/sha256", kind, times=None))
    with RegistryClient(proxy.host) as c:
        layer = _layer_of(c, unique_repo)
        out = io.BytesIO()
        with pytest.raises(error, match=f"blob {layer['digest']} of .*: {match}"):
            c.fetch_blob(unique_repo, str(layer["digest"]), int(str(layer["size"])), out)
    assert out.getvalue() == b""  # nothing handed on: the last bytes are held back until verified


def test_a_truncated_blob_resumes_with_a_range_request(proxy: FaultProxy, unique_repo: str) -> None:
    blob = os.urandom(2_000_000)
    with RegistryClient(proxy.upstream) as c:
        c.upload_blob(unique_repo, digest_of(blob), body(blob))
    proxy.add(Fault("GET", "/blobs/sha256", "truncate", times=1))
    with RegistryClient(proxy.host) as c:
        out = io.BytesIO()
        c.fetch_blob(unique_repo, digest_of(blob), len(blob), out)
    assert out.getvalue() == blob
    assert any(h.get("Range") == "bytes=1000000-" for m, _, h in proxy.seen if m == "GET")


def test_a_blob_that_stays_truncated_is_refused(proxy: FaultProxy, unique_repo: str) -> None:
    blob = os.urandom(200_000)
    with RegistryClient(proxy.upstream) as c:
        c.upload_blob(unique_repo, digest_of(blob), body(blob))
    proxy.add(Fault("GET", "/blobs/sha256", "truncate", times=None))
    with RegistryClient(proxy.host) as c, pytest.raises(RegistryError, match="truncated"):
        c.fetch_blob(unique_repo, digest_of(blob), len(blob), io.BytesIO())


def test_a_manifest_that_does_not_match_its_digest_is_refused(proxy: FaultProxy, unique_repo: str) -> None:
    with RegistryClient(proxy.upstream) as c:
        digest, _ = put_image(c, unique_repo, "1", LAYER)
    proxy.add(Fault("GET", "/manifests/", "corrupt", times=None))
    with RegistryClient(proxy.host) as c:
        with pytest.raises(DigestMismatch, match="digest mismatch"):
            c.get_manifest(unique_repo, digest)
        with pytest.raises(DigestMismatch, match="digest mismatch") as e:
            c.get_manifest(unique_repo, "1")
    assert e.value.hint is not None and "Docker-Content-Digest" in e.value.hint


@pytest.mark.compat
def test_skopeo_reads_what_the_client_pushed(registry: Registry, unique_repo: str) -> None:
    if subprocess.run(["which", "skopeo"], capture_output=True).returncode:
        pytest.skip("skopeo is not installed")
    with RegistryClient(registry.host) as c:
        digest, _ = put_image(c, unique_repo, "1", LAYER)
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/{unique_repo}:1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Digest"] == digest
