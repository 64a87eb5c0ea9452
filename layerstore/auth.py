"""Registry credentials on disk: where `pybuild login` keeps them and where pull/push find them.

Files, in the order they are read (the first that has an entry for the registry wins):
1. `$REGISTRY_AUTH_FILE` when set (the variable podman, buildah and skopeo honour), else pybuild's
   own `$XDG_CONFIG_HOME/pybuild/auth.json` (`~/.config/pybuild/auth.json`). `login` writes here,
   mode 0600, atomically; `logout` removes the entry here.
2. Docker's `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`), read only.

All have Docker's shape: `{"auths": {"registry.example": {"auth": base64("user:password")}}}`,
optionally with `identitytoken` (an OAuth refresh token). Keys may be written as a bare host, a
URL (`https://index.docker.io/v1/`) or with a path; `docker.io` matches Docker's legacy key.
Credential helpers (`credsStore`, `credHelpers`) are not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerstore.atomic import atomic_write
from pybuild.errors import PybuildError

DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    identity_token: str | None = None

    def __repr__(self) -> str:  # never print a password in a traceback or log line
        return f"Credentials(username={self.username!r}, password=***)"


class AuthFileError(PybuildError):
    """An auth file that cannot be read or written."""


def pybuild_auth_file() -> Path:
    """The file `login` writes: $REGISTRY_AUTH_FILE, else $XDG_CONFIG_HOME/pybuild/auth.json."""
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return Path(env)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "pybuild" / "auth.json"


def docker_config_file() -> Path:
    """Docker's client config: $DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) / "config.json" if env else Path.home() / ".docker" / "config.json"


def auth_files() -> list[Path]:
    return [pybuild_auth_file(), docker_config_file()]


def normalize_key(key: str) -> str:
    """`https://host:5000/v1/` -> `host:5000`; Docker Hub's many names -> `docker.io`."""
    k = key.strip()
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix):]
    k = k.split("/", 1)[0]
    return "docker.io" if k in ("index.docker.io", "registry-1.docker.io") else k


def lookup(registry: str) -> Credentials | None:
    """The credentials for `registry` (a host[:port] as in an image reference), or None."""
    want = normalize_key(registry)
    for path in auth_files():
        creds = _lookup_in(_read(path), want, path)
        if creds is not None:
            return creds
    return None


def login(registry: str, creds: Credentials) -> Path:
    """Record `creds` for `registry` in pybuild's auth file (0600, atomic); return its path."""
    path = pybuild_auth_file()
    doc = _read(path)
    auths = doc.setdefault("auths", {})
    key = normalize_key(registry)
    for k in [k for k in auths if normalize_key(k) == key]:
        del auths[k]
    entry = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
    if creds.identity_token:
        entry["identitytoken"] = creds.identity_token
    auths[key] = entry
    _write(path, doc)
    return path


def logout(registry: str) -> bool:
    """Forget `registry` in pybuild's auth file; False when it held no entry for it."""
    path = pybuild_auth_file()
    doc = _read(path)
    auths = doc.get("auths", {})
    key = normalize_key(registry)
    keys = [k for k in auths if normalize_key(k) == key]
    for k in keys:
        del auths[k]
    if keys:
        _write(path, doc)
    return bool(keys)


def _lookup_in(doc: dict[str, Any], want: str, path: Path) -> Credentials | None:
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if normalize_key(key) != want or not isinstance(entry, dict):
            continue
        return _decode_entry(entry, path, key)
    return None


def _decode_entry(entry: dict[str, Any], path: Path, key: str) -> Credentials | None:
    token = entry.get("identitytoken") or None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthFileError(f"{path}: the auth entry for {key} is not base64 of user:password") from None
        if not sep:
            raise AuthFileError(f"{path}: the auth entry for {key} is not base64 of user:password")
        return Credentials(user, password, token)
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"], token)
    if token:
        return Credentials("<token>", "", token)
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise AuthFileError(f"{path}: cannot read: {e.strerror}") from None
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise AuthFileError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise AuthFileError(f"{path}: not a JSON object")
    return doc


def _write(path: Path, doc: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), mode=0o600)
    except OSError as e:
        raise AuthFileError(f"{path}: cannot write: {e.strerror}") from None
