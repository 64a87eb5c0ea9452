"""Paths resolved inside a root never leave it, however the symlinks point."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerstore.rootpath import PathEscape, is_within, resolve_in_root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "usr" / "bin").mkdir(parents=True)
    os.symlink("/usr/bin", r / "bin")
    os.symlink("../../../../..", r / "up")
    os.symlink("/etc/../../../outside", r / "abs-up")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    return r


def test_absolute_symlink_is_rerooted(root: Path) -> None:
    assert resolve_in_root(root, "/bin/sh") == root / "usr/bin/sh"


def test_dotdot_stops_at_root(root: Path) -> None:
    assert resolve_in_root(root, "../../etc/passwd") == root / "etc/passwd"
    assert resolve_in_root(root, "/up/etc") == root / "etc"
    assert resolve_in_root(root, "/abs-up/x") == root / "outside/x"


def test_final_symlink_kept_when_not_following(root: Path) -> None:
    assert resolve_in_root(root, "/bin", follow_final=False) == root / "bin"
    assert resolve_in_root(root, "/bin") == root / "usr/bin"


def test_symlink_loop_is_an_error(root: Path) -> None:
    with pytest.raises(PathEscape, match="too many levels"):
        resolve_in_root(root, "/loop1/x")


def test_is_within() -> None:
    assert is_within(Path("/a/b"), Path("/a/b/c"))
    assert is_within(Path("/a/b"), Path("/a/b"))
    assert not is_within(Path("/a/b"), Path("/a/bc"))
    assert not is_within(Path("/a/b"), Path("/a/b/../c"))
