"""Fixtures for moving images: real registries (open, htpasswd Basic, Bearer tokens), the token
server, a fault-injecting proxy, and auth files kept out of the user's home.

The registries are started once per module and killed in `finally`; each test pushes to its own
repository names (`unique_repo`) so tests sharing a registry do not see each other's images.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_tool

from .servers import FaultProxy, Registry, TokenServer, htpasswd_auth

USER, PASSWORD = "pybuild", "s3cret-pass"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry without auth."""
    need_tool("docker-registry")
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with htpasswd (bcrypt) Basic auth for USER/PASSWORD."""
    need_tool("docker-registry")
    need_tool("htpasswd")
    work = tmp_path_factory.mktemp("basic-registry")
    with Registry(work, auth=htpasswd_auth(work, {USER: PASSWORD})) as reg:
        yield reg


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    need_tool("openssl")
    with TokenServer(tmp_path_factory.mktemp("token-server"), users={USER: PASSWORD}) as server:
        yield server


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer) -> Iterator[Registry]:
    """A registry that wants Bearer tokens from `token_server`."""
    need_tool("docker-registry")
    with Registry(tmp_path_factory.mktemp("token-registry"), auth=token_server.auth_config()) as reg:
        yield reg


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of `registry` (127.0.0.1, so plain http)."""
    with FaultProxy(registry.host) as p:
        yield p


@pytest.fixture
def unique_repo() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def private_auth_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every auth file at this test's temp dir (for this process and the pybuild it runs)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    return home
