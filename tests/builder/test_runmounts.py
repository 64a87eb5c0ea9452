"""RUN --mount=type=cache: ids, BUILDKIT_CACHE_MOUNT_NS and the sharing modes (F56)."""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

import pytest

from builder.runmounts import Backing, cache_id, mount_target
from parser import Mount

pytestmark = pytest.mark.root  # cache directories are chowned to uid/gid


def test_cache_ids_default_to_the_target_as_written_and_take_the_namespace() -> None:
    assert cache_id(Mount(type="cache", target="/root/.cache/")) == "/root/.cache"
    assert cache_id(Mount(type="cache", target="rel/./dir")) == "rel/dir"  # before WORKDIR is applied
    assert cache_id(Mount(type="cache", target="/x", cache_id="pip"), "team") == "team/pip"
    assert mount_target(Mount(type="cache", target="rel/./dir"), "/w") == "/w/rel/dir"


def backing(root: Path, stack: ExitStack) -> Backing:
    return Backing(root, Path(tempfile.mkdtemp(dir=root)), stack)


def test_sharing_modes(tmp_path: Path) -> None:
    shared = Mount(type="cache", target="/c")
    private = Mount(type="cache", target="/c", sharing="private")
    with ExitStack() as one, ExitStack() as two:
        first = backing(tmp_path, one).cache_dir(shared, "c", None)
        assert backing(tmp_path, two).cache_dir(shared, "c", None) == first  # shared: the same directory
    with ExitStack() as one, ExitStack() as two:
        held = backing(tmp_path, one).cache_dir(private, "c", None)
        other = backing(tmp_path, two).cache_dir(private, "c", None)
        assert held == first and other != first  # private: a fresh one while another build holds it
        assert os.listdir(other) == []
    with ExitStack() as one:
        new = backing(tmp_path, one).cache_dir(Mount(type="cache", target="/d", mode=0o700, uid=5, gid=6), "d", None)
        st = os.stat(new)
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o700, 5, 6)
