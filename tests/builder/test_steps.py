"""The file-system steps below the engine: what WORKDIR writes into its layer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.buildargs import Scope
from builder.context import SourceTree
from builder.imageconfig import StageConfig
from builder.steps import BuildEnv, discard, prepare_workdir
from layerstore.layers import Layer
from layerstore.oci import ContainerConfig
from layerstore.store import Store
from pybuild.errors import BuildError

pytestmark = pytest.mark.root  # an overlay of the layer below


@pytest.fixture
def env(store_root: Path, tmp_path: Path) -> Iterator[BuildEnv]:
    with Store.open(store_root) as store:
        yield BuildEnv(store, SourceTree(tmp_path), {}, {}, {}, {}, "default", 1_700_000_000, store.mkdtemp("test-"))


def base_layer(env: BuildEnv, tmp_path: Path) -> Layer:
    tree = tmp_path / "base"
    tree.mkdir()
    os.symlink("/opt/app", tree / "app")  # a link into directories that do not exist yet
    (tree / "file").write_text("")
    return env.store.layers.commit_dir(tree)


def test_workdir_follows_a_symlink_to_a_missing_directory_inside_the_root(env: BuildEnv, tmp_path: Path) -> None:
    layer = base_layer(env, tmp_path)
    sc = StageConfig(ContainerConfig(), Scope())
    upper = prepare_workdir(env, sc, "/app/sub", "Buildfile:3", "k", lambda: (layer,)).execute()
    try:
        assert not (upper / "app").exists()  # the link is followed, not replaced
        for made in ("opt", "opt/app", "opt/app/sub"):
            st = (upper / made).lstat()
            assert (oct(st.st_mode), st.st_uid, st.st_mtime) == (oct(0o40755), 0, 1_700_000_000), made
    finally:
        discard(upper)


def test_workdir_through_a_file_names_the_line(env: BuildEnv, tmp_path: Path) -> None:
    layer = base_layer(env, tmp_path)
    sc = StageConfig(ContainerConfig(), Scope())
    with pytest.raises(BuildError, match=r"^Buildfile:3: WORKDIR /file/x: .*file"):
        prepare_workdir(env, sc, "/file/x", "Buildfile:3", "k", lambda: (layer,)).execute()
    assert not list(env.store.tmp.glob("workdir-*"))  # the failed step's upper is gone
