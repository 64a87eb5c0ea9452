"""ADD of URLs: naming, checksum, mode 0600, Last-Modified mtime; against a local HTTP server."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from builder.remote import RemoteError, fetch, is_git_url, is_url, parse_checksum, url_filename
from pybuild.errors import DigestMismatch
from tests.builder.conftest import BODY


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://example.com/dir/tool.sh", "tool.sh"),
        ("https://example.com/dir/tool.sh?x=1#frag", "tool.sh"),
        ("https://example.com/", "__unnamed__"),
        ("https://example.com", "__unnamed__"),
        ("https://example.com/dir/", "__unnamed__"),
    ],
)
def test_downloaded_files_are_named_after_the_url_path(url: str, name: str) -> None:
    assert url_filename(url) == name


def test_url_and_git_sources_are_told_apart() -> None:
    assert is_url("https://example.com/x.tar.gz")
    assert not is_url("https://github.com/moby/buildkit.git#v0.12")
    assert is_git_url("git@github.com:moby/buildkit.git")
    assert not is_url("file.txt") and not is_git_url("file.txt")


def test_fetch_writes_0600_with_last_modified_time(server: str, tmp_path: Path) -> None:
    d = fetch(f"{server}/files/tool.sh", tmp_path)
    assert d.path == tmp_path / "tool.sh" and d.path.read_bytes() == BODY
    assert stat.S_IMODE(os.stat(d.path).st_mode) == 0o600
    assert d.mtime == 1445412480 and os.stat(d.path).st_mtime == 1445412480
    assert d.digest == "sha256:" + hashlib.sha256(BODY).hexdigest()
    assert fetch(f"{server}/notime/x", tmp_path).mtime is None


def test_checksum_is_verified(server: str, tmp_path: Path) -> None:
    good = "sha256:" + hashlib.sha256(BODY).hexdigest()
    assert fetch(f"{server}/a", tmp_path, checksum=good).path.exists()
    with pytest.raises(DigestMismatch):
        fetch(f"{server}/b", tmp_path, checksum="sha256:" + "0" * 64)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("value", ["md5:abc", "sha256", "sha256:xyz", "sha256:" + "A" * 64])
def test_malformed_checksums_are_refused(value: str) -> None:
    with pytest.raises(RemoteError, match="invalid checksum"):
        parse_checksum(value)


def test_http_errors_name_the_url(server: str, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match=r"/missing/file: HTTP 404"):
        fetch(f"{server}/missing/file", tmp_path)
    with pytest.raises(RemoteError, match="cannot download"):
        fetch("http://127.0.0.1:1/x", tmp_path, timeout=5)
