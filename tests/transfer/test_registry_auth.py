"""Pure decisions of registry auth and transport: challenge parsing, scopes, scheme choice, backoff,
and the credential files `login` writes and pull/push read."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from layerstore import auth
from layerstore.registry_auth import Challenge, covers, merge_scopes, parse_challenges
from layerstore.registry_http import backoff_delay, is_local, schemes_to_try

CHALLENGES = [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
     [Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                           "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    ('basic realm=simple', [Challenge("basic", {"realm": "simple"})]),
    ('Basic realm="a", Bearer realm="https://x/t", service=svc',
     [Challenge("basic", {"realm": "a"}), Challenge("bearer", {"realm": "https://x/t", "service": "svc"})]),
    ('Bearer realm="q\\"uoted",error="insufficient_scope",scope="repository:a:pull repository:b:pull,push"',
     [Challenge("bearer", {"realm": 'q"uoted', "error": "insufficient_scope",
                           "scope": "repository:a:pull repository:b:pull,push"})]),
    ("Basic", [Challenge("basic", {})]),
    ("", []),
]


@pytest.mark.parametrize("header, expected", CHALLENGES)
def test_challenges_parse_like_rfc7235(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def test_challenge_scopes_split_on_spaces() -> None:
    (c,) = parse_challenges('Bearer realm="r",scope="repository:a:pull repository:b:push"')
    assert c.scopes == ("repository:a:pull", "repository:b:push")


def test_scopes_merge_actions_per_repository() -> None:
    merged = merge_scopes(["repository:a:pull", "repository:b:pull", "repository:a:push", "repository:a:pull"])
    assert merged == ("repository:a:pull,push", "repository:b:pull")


@pytest.mark.parametrize("held, wanted, ok", [
    (["repository:a:pull,push"], ["repository:a:pull"], True),
    (["repository:a:pull"], ["repository:a:push"], False),
    (["repository:a:pull"], ["repository:b:pull"], False),
    (["repository:a:pull", "repository:b:pull"], ["repository:b:pull", "repository:a:pull"], True),
    ([], [], True),
])
def test_a_token_covers_only_what_it_grants(held: list[str], wanted: list[str], ok: bool) -> None:
    assert covers(held, wanted) is ok


@pytest.mark.parametrize("host, verify, schemes", [
    ("localhost:5000", True, ("http", "https")),
    ("127.0.0.1:5000", False, ("http", "https")),
    ("127.1.2.3", True, ("http", "https")),
    ("[::1]:5000", True, ("http", "https")),
    ("registry.example.com", True, ("https",)),
    ("registry.example.com:5000", False, ("https", "http")),
    ("10.0.0.5:5000", True, ("https",)),
])
def test_plain_http_only_for_loopback_or_without_tls_verify(host: str, verify: bool, schemes: tuple[str, ...]) -> None:
    assert schemes_to_try(host, verify) == schemes


def test_is_local_does_not_trust_lookalike_names() -> None:
    assert not is_local("localhost.example.com")
    assert not is_local("127.0.0.1.nip.io")


def test_backoff_doubles_and_honours_retry_after() -> None:
    assert [backoff_delay(i, None) for i in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_delay(0, "3") == 3.0
    assert backoff_delay(0, "100000") == 30.0
    assert backoff_delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.5


def test_login_writes_0600_and_lookup_reads_it(private_auth_files: Path) -> None:
    path = auth.login("registry.example:5000", auth.Credentials("me", "pw:with:colons"))
    assert path == private_auth_files / ".config" / "pybuild" / "auth.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert base64.b64decode(doc["auths"]["registry.example:5000"]["auth"]) == b"me:pw:with:colons"
    assert auth.lookup("registry.example:5000") == auth.Credentials("me", "pw:with:colons")
    assert auth.lookup("registry.example") is None
    assert auth.logout("registry.example:5000") is True
    assert auth.lookup("registry.example:5000") is None
    assert auth.logout("registry.example:5000") is False


def test_docker_config_auths_are_read_with_docker_hub_legacy_key(private_auth_files: Path) -> None:
    cfg = private_auth_files / ".docker" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:hubpw").decode()},
        "https://ghcr.io": {"username": "u", "password": "p"},
    }, "credsStore": "desktop"}))
    assert auth.lookup("docker.io") == auth.Credentials("hubuser", "hubpw")
    assert auth.lookup("ghcr.io") == auth.Credentials("u", "p")


def test_pybuild_auth_file_wins_over_docker_config(private_auth_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_dir = private_auth_files / "dockercfg"
    docker_dir.mkdir()
    (docker_dir / "config.json").write_text(json.dumps({"auths": {"r.example": {"auth": base64.b64encode(b"d:d").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_dir))
    assert auth.lookup("r.example") == auth.Credentials("d", "d")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(private_auth_files / "podman-auth.json"))
    auth.login("r.example", auth.Credentials("p", "p"))
    assert (private_auth_files / "podman-auth.json").exists()
    assert auth.lookup("r.example") == auth.Credentials("p", "p")


def test_a_damaged_auth_file_is_one_clear_error(private_auth_files: Path) -> None:
    path = auth.pybuild_auth_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(auth.AuthFileError, match=r"auth.json: not valid JSON"):
        auth.lookup("x.example")


def test_credentials_never_show_the_password() -> None:
    assert "hunter2" not in repr(auth.Credentials("u", "hunter2"))
